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
    /// The repository (an archive repository).
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

/// How long a refused request's connection stays open after the answer, so the
/// client reads it before the close (which resets a connection with unread data).
const LINGER: Duration = Duration::from_secs(1);
/// How long soup may take to close a connection shut down here before it is
/// forgotten anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type ConnId = u64;

/// Who a connection is from, for the per-client limits: an IPv4 address, or an
/// IPv6 /64 (one host usually has a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => Self::V4(ip),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix((u128::from(ip) >> 64) as u64),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Accepted, its request not read yet.
    Request,
    /// Its request read: being answered.
    Answering,
    /// Refused before its body; taken from soup, closed after [`LINGER`].
    Closing(Instant),
}

/// A connection handed to soup.
struct Conn {
    client: ClientKey,
    socket: gio::Socket,
    accepted: Instant,
    msg: Option<glib::WeakRef<soup::ServerMessage>>,
    phase: Phase,
    /// When it was shut down here (timed out or evicted).
    shut: Option<Instant>,
    /// The stream taken back from soup (dropping it closes the socket).
    stolen: Option<gio::IOStream>,
}

/// An accepted connection waiting for one of its client's others to end.
struct Queued {
    socket: gio::Socket,
    accepted: Instant,
}

#[derive(Default)]
struct Client {
    /// Connections handed to soup.
    connections: usize,
    queue: VecDeque<Queued>,
}

#[derive(Default)]
struct Connections {
    next_id: ConnId,
    /// Connections handed to soup, oldest first.
    open: BTreeMap<ConnId, Conn>,
    clients: HashMap<ClientKey, Client>,
    queued: usize,
    /// The connection being handed to soup (its first request starts at once).
    accepting: Option<ConnId>,
    /// Responses in progress.
    active: usize,
}

impl Connections {
    /// `client` has one connection less; its next queued one, if any, takes the
    /// place (and is counted already).
    fn release(&mut self, client: ClientKey) -> Option<Queued> {
        let entry = self.clients.get_mut(&client)?;
        entry.connections = entry.connections.saturating_sub(1);
        let next = entry.queue.pop_front();
        if next.is_some() {
            entry.connections += 1;
            self.queued -= 1;
        }
        if entry.connections == 0 && entry.queue.is_empty() {
            self.clients.remove(&client);
        }
        next
    }
}

/// A socket listened on, with its accept watch.
struct Listener {
    ip: IpAddr,
    socket: gio::Socket,
    watch: glib::Source,
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

    /// Listens on `wanted` and nowhere else. Returns why addresses could not be
    /// listened on (each is tried again on the next call).
    fn sync_listeners(self: &Rc<Self>, wanted: &[IpAddr]) -> Vec<ShareError> {
        let mut errors = Vec::new();
        let gone: Vec<Listener> = {
            let mut listeners = self.listeners.borrow_mut();
            let (keep, gone) = std::mem::take(&mut *listeners)
                .into_iter()
                .partition(|l| wanted.contains(&l.ip));
            *listeners = keep;
            gone
        };
        for listener in gone {
            listener.watch.destroy();
            let _ = listener.socket.close();
        }
        self.unlistenable
            .borrow_mut()
            .retain(|ip| wanted.contains(ip));
        for &ip in wanted {
            if self.listeners.borrow().iter().any(|l| l.ip == ip) {
                continue;
            }
            let port = self.port.get();
            let socket = match listening_socket(ip, port) {
                Ok(socket) => socket,
                Err(e) => {
                    let error = ShareError::Listen {
                        address: SocketAddr::new(ip, port).to_string(),
                        message: e.message().to_owned(),
                    };
                    self.unlistenable.borrow_mut().insert(ip);
                    errors.push(error);
                    continue;
                }
            };
            if port == 0 {
                let chosen = socket
                    .local_address()
                    .ok()
                    .and_then(|a| a.downcast::<gio::InetSocketAddress>().ok())
                    .map_or(0, |a| a.port());
                self.port.set(chosen);
            }
            let watch = self.watch_listener(&socket);
            self.listeners
                .borrow_mut()
                .push(Listener { ip, socket, watch });
            self.unlistenable.borrow_mut().remove(&ip);
        }
        errors
    }

    /// Accepts connections on `socket` as they come, on the thread-default context.
    fn watch_listener(self: &Rc<Self>, socket: &gio::Socket) -> glib::Source {
        let weak = Rc::downgrade(self);
        let source = gio::prelude::SocketExtManual::create_source(
            socket,
            glib::IOCondition::IN,
            None::<&gio::Cancellable>,
            Some("ferry-accept"),
            glib::Priority::DEFAULT,
            move |socket, _| match weak.upgrade() {
                Some(inner) => inner.accept_ready(socket),
                None => glib::ControlFlow::Break,
            },
        );
        source.attach(Some(&glib::MainContext::ref_thread_default()));
        source
    }

    fn accept_ready(self: &Rc<Self>, listening: &gio::Socket) -> glib::ControlFlow {
        // A bounded batch, so that a flood cannot starve the responses.
        for _ in 0..64 {
            match listening.accept(None::<&gio::Cancellable>) {
                Ok(socket) => self.accepted(socket),
                Err(e) if e.matches(gio::IOErrorEnum::WouldBlock) => break,
                Err(_) => {
                    // Out of descriptors (or worse): the socket stays readable, so
                    // stop watching it for a moment instead of spinning.
                    let weak = Rc::downgrade(self);
                    let listening = listening.clone();
                    glib::timeout_add_local_once(Duration::from_millis(250), move || {
                        if let Some(inner) = weak.upgrade() {
                            inner.rewatch(&listening);
                        }
                    });
                    return glib::ControlFlow::Break;
                }
            }
        }
        glib::ControlFlow::Continue
    }

    fn rewatch(self: &Rc<Self>, socket: &gio::Socket) {
        if self.stopped.get() {
            return;
        }
        let known = self.listeners.borrow().iter().any(|l| &l.socket == socket);
        if known {
            let watch = self.watch_listener(socket);
            if let Some(listener) = self
                .listeners
                .borrow_mut()
                .iter_mut()
                .find(|l| &l.socket == socket)
            {
                listener.watch.destroy();
                listener.watch = watch;
            }
        }
    }

    /// A new connection: handed to soup if its client has room, else queued, else
    /// closed.
    fn accepted(self: &Rc<Self>, socket: gio::Socket) {
        let peer = socket
            .remote_address()
            .ok()
            .and_then(|a| a.downcast::<gio::InetSocketAddress>().ok())
            .map(|a| IpAddr::from(a.address()));
        let Some(peer) = peer else {
            let _ = socket.close();
            return;
        };
        let client = ClientKey::of(peer);
        let now = Instant::now();
        enum Verdict {
            Serve(gio::Socket),
            Queued,
            Refused(gio::Socket),
        }
        let verdict = {
            let mut conns = self.connections.borrow_mut();
            let queued = conns.queued;
            let entry = conns.clients.entry(client).or_default();
            if entry.connections < self.limits.max_connections_per_client {
                entry.connections += 1;
                Verdict::Serve(socket)
            } else if entry.queue.len() < self.limits.max_queued_per_client
                && queued < self.limits.max_queued_connections
            {
                entry.queue.push_back(Queued {
                    socket,
                    accepted: now,
                });
                conns.queued += 1;
                Verdict::Queued
            } else {
                if entry.connections == 0 && entry.queue.is_empty() {
                    conns.clients.remove(&client);
                }
                Verdict::Refused(socket)
            }
        };
        match verdict {
            Verdict::Serve(socket) => self.serve_connection(client, socket, now),
            Verdict::Queued => self.bump(|s| s.queued_connections += 1),
            Verdict::Refused(socket) => {
                self.bump(|s| s.refused_connections += 1);
                let _ = socket.close();
            }
        }
    }

    /// Hands a connection (already counted for `client`) to soup.
    fn serve_connection(
        self: &Rc<Self>,
        client: ClientKey,
        socket: gio::Socket,
        accepted: Instant,
    ) {
        let id = {
            let mut conns = self.connections.borrow_mut();
            let id = conns.next_id;
            conns.next_id += 1;
            conns.open.insert(
                id,
                Conn {
                    client,
                    socket: socket.clone(),
                    accepted,
                    msg: None,
                    phase: Phase::Request,
                    shut: None,
                    stolen: None,
                },
            );
            conns.accepting = Some(id);
            id
        };
        let _ = socket.set_option(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        socket.set_timeout(self.limits.idle_timeout.as_secs().max(1) as u32);
        let local = socket.local_address().ok();
        let remote = socket.remote_address().ok();
        let stream = socket.connection_factory_create_connection();
        let handed = self
            .server
            .accept_iostream(&stream, local.as_ref(), remote.as_ref());
        let started = {
            let mut conns = self.connections.borrow_mut();
            conns.accepting = None;
            conns.open.get(&id).is_some_and(|c| c.msg.is_some())
        };
        if handed.is_err() || !started {
            let _ = socket.close();
            self.forget(id);
            return;
        }
        self.evict_pending();
    }

    /// Too many connections still in their request phase: the oldest are shut.
    fn evict_pending(&self) {
        let victims: Vec<gio::Socket> = {
            let mut conns = self.connections.borrow_mut();
            let pending: Vec<ConnId> = conns
                .open
                .iter()
                .filter(|(_, c)| c.phase == Phase::Request && c.shut.is_none())
                .map(|(id, _)| *id)
                .collect();
            let excess = pending
                .len()
                .saturating_sub(self.limits.max_pending_connections);
            let now = Instant::now();
            let mut victims = Vec::new();
            for id in &pending[..excess] {
                if let Some(conn) = conns.open.get_mut(id) {
                    conn.shut = Some(now);
                    victims.push(conn.socket.clone());
                }
            }
            victims
        };
        for socket in victims {
            let _ = socket.shutdown(true, true);
            self.bump(|s| s.evicted_connections += 1);
        }
    }

    /// Drops the record of a connection and gives its place to its client's next
    /// queued one (closing those that waited too long).
    fn forget(self: &Rc<Self>, id: ConnId) {
        let Some(conn) = self.connections.borrow_mut().open.remove(&id) else {
            return;
        };
        drop(conn.stolen);
        loop {
            let next = self.connections.borrow_mut().release(conn.client);
            match next {
                None => return,
                Some(queued) if queued.accepted.elapsed() >= self.limits.header_timeout => {
                    let _ = queued.socket.close();
                    self.bump(|s| s.timed_out_connections += 1);
                }
                Some(queued) => {
                    // Not from inside soup's signal handler that got us here.
                    let weak = Rc::downgrade(self);
                    glib::idle_add_local_once(move || {
                        if let Some(inner) = weak.upgrade().filter(|i| !i.stopped.get()) {
                            inner.serve_connection(conn.client, queued.socket, queued.accepted);
                        }
                    });
                    return;
                }
            }
        }
    }

    /// soup is done with a connection (its response sent, or it closed).
    fn connection_ended(self: &Rc<Self>, id: ConnId) {
        let closing = {
            let conns = self.connections.borrow();
            match conns.open.get(&id) {
                None => return,
                Some(conn) => matches!(conn.phase, Phase::Closing(_)),
            }
        };
        // A refused request's connection is closed by `tick` after LINGER.
        if !closing {
            self.forget(id);
        }
    }

    /// The request's headers are in. A request with a body is answered here,
    /// without reading the body: the connection is taken back from soup, which
    /// would otherwise read (and keep) the whole body first.
    fn got_headers(self: &Rc<Self>, id: ConnId, msg: &soup::ServerMessage) {
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let has_body = msg
            .request_headers()
            .is_some_and(|headers| match headers.encoding() {
                soup::Encoding::None => false,
                soup::Encoding::ContentLength => headers.content_length() > 0,
                _ => true,
            });
        if !has_body {
            if let Some(conn) = self.connections.borrow_mut().open.get_mut(&id) {
                conn.phase = Phase::Answering;
            }
            return;
        }
        let (status, reason, allow) = if method == "GET" || method == "HEAD" {
            (400, "Bad Request", "")
        } else {
            (405, "Method Not Allowed", "Allow: GET, HEAD\r\n")
        };
        self.bump(|s| s.refused_bodies += 1);
        let socket = {
            let mut conns = self.connections.borrow_mut();
            let Some(conn) = conns.open.get_mut(&id) else {
                return;
            };
            conn.phase = Phase::Closing(Instant::now());
            conn.socket.clone()
        };
        // Emits "disconnected", which leaves a closing connection alone.
        let stream = msg.steal_connection();
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nServer: Ferry\r\n{allow}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        // Nothing was written on this connection yet: the answer fits the buffer.
        let _ = socket.send_with_blocking(response.as_bytes(), false, None::<&gio::Cancellable>);
        let _ = socket.shutdown(false, true);
        if let Some(conn) = self.connections.borrow_mut().open.get_mut(&id) {
            conn.stolen = stream;
        }
    }

    /// soup starts reading the request of the connection being handed to it.
    fn request_started(self: &Rc<Self>, msg: &soup::ServerMessage) {
        // One request per connection. libsoup 3.2 never closes an idle keep-alive
        // connection whose client went away (it stays in CLOSE-WAIT, holding a
        // descriptor, forever); closing after each response leaks nothing, at the
        // cost of a TCP handshake per request. (soup also closes every connection
        // after one request when it has no listener of its own.)
        if let Some(headers) = msg.response_headers() {
            headers.replace("Connection", "close");
        }
        let Some(id) = self.connections.borrow().accepting else {
            return;
        };
        if let Some(conn) = self.connections.borrow_mut().open.get_mut(&id) {
            conn.msg = Some(msg.downgrade());
        }
        let weak = Rc::downgrade(self);
        msg.connect_got_headers(move |msg| {
            if let Some(inner) = weak.upgrade() {
                inner.got_headers(id, msg);
            }
        });
        let ended = {
            let weak = Rc::downgrade(self);
            move |_: &soup::ServerMessage| {
                if let Some(inner) = weak.upgrade() {
                    inner.connection_ended(id);
                }
            }
        };
        msg.connect_finished(ended.clone());
        msg.connect_disconnected(ended);
    }

    fn tick(self: &Rc<Self>) {
        let timeout = self.limits.header_timeout;
        let mut shut = Vec::new();
        let mut done = Vec::new();
        let mut expired = Vec::new();
        {
            let mut conns = self.connections.borrow_mut();
            let now = Instant::now();
            for (id, conn) in conns.open.iter_mut() {
                match conn.phase {
                    // Answered and lingered: closed (dropping the stream closes it).
                    Phase::Closing(since) if since.elapsed() >= LINGER => done.push(*id),
                    Phase::Closing(_) => {}
                    // soup did not close it after all.
                    _ if conn.shut.is_some_and(|t| t.elapsed() >= SHUTDOWN_GRACE)
                        || conn.socket.is_closed() =>
                    {
                        done.push(*id)
                    }
                    // Too slow to send its request.
                    Phase::Request if conn.shut.is_none() && conn.accepted.elapsed() >= timeout => {
                        conn.shut = Some(now);
                        shut.push(conn.socket.clone());
                    }
                    _ => {}
                }
            }
            // Queued too long: closed without ever reaching soup.
            let mut emptied = Vec::new();
            let mut dropped = 0;
            for (key, client) in conns.clients.iter_mut() {
                while client
                    .queue
                    .front()
                    .is_some_and(|q| q.accepted.elapsed() >= timeout)
                {
                    expired.push(client.queue.pop_front().expect("front").socket);
                    dropped += 1;
                }
                if client.connections == 0 && client.queue.is_empty() {
                    emptied.push(*key);
                }
            }
            conns.queued -= dropped;
            for key in emptied {
                conns.clients.remove(&key);
            }
        }
        for socket in shut {
            let _ = socket.shutdown(true, true);
            self.bump(|s| s.timed_out_connections += 1);
        }
        for socket in expired {
            let _ = socket.close();
            self.bump(|s| s.timed_out_connections += 1);
        }
        for id in done {
            if let Some(socket) = self
                .connections
                .borrow()
                .open
                .get(&id)
                .map(|c| c.socket.clone())
            {
                let _ = socket.close();
            }
            self.forget(id);
        }
        if matches!(self.listen, Listen::Interfaces(_))
            && self.last_listen_check.get().elapsed() >= self.limits.refresh_interval
        {
            self.last_listen_check.set(Instant::now());
            // Reported once per address, not every few seconds.
            let known: HashSet<IpAddr> = self.unlistenable.borrow().clone();
            for error in self.sync_listeners(&self.listen.addresses()) {
                if let ShareError::Listen { address, .. } = &error {
                    let ip = address.parse::<SocketAddr>().map(|a| a.ip());
                    if ip.is_ok_and(|ip| known.contains(&ip)) {
                        continue;
                    }
                }
                eprintln!("ferry: {error}");
            }
        }
        if self.last_refresh.get().elapsed() >= self.limits.refresh_interval {
            self.last_refresh.set(Instant::now());
            self.refresh(RepoFingerprint::of(&self.root));
        }
    }

    fn track_request(self: &Rc<Self>, msg: &soup::ServerMessage) -> Rc<RequestState> {
        self.connections.borrow_mut().active += 1;
        let request = Rc::new(RequestState {
            done: Cell::new(false),
        });
        let end = {
            let weak = Rc::downgrade(self);
            let request = request.clone();
            move |_: &soup::ServerMessage| {
                if request.done.replace(true) {
                    return;
                }
                if let Some(inner) = weak.upgrade() {
                    let mut conns = inner.connections.borrow_mut();
                    conns.active = conns.active.saturating_sub(1);
                }
            }
        };
        msg.connect_finished(end.clone());
        msg.connect_disconnected(end);
        request
    }

    fn handle(self: &Rc<Self>, msg: &soup::ServerMessage, path: &str) {
        self.bump(|s| s.requests += 1);
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let head = method == "HEAD";
        if method != "GET" && !head {
            set_status(msg, 405);
            if let Some(headers) = msg.response_headers() {
                headers.replace("Allow", "GET, HEAD");
            }
            return;
        }
        // Whole bodies only: soup would copy a mapped body to answer a range.
        if let Some(headers) = msg.request_headers() {
            headers.remove("Range");
        }
        if self.connections.borrow().active >= self.limits.max_active_requests {
            self.bump(|s| s.busy += 1);
            set_status(msg, 503);
            if let Some(headers) = msg.response_headers() {
                headers.replace("Retry-After", "1");
            }
            return;
        }
        let Some(target) = parse_request_path(path, self.repo_index) else {
            self.not_found(msg);
            return;
        };
        let request = self.track_request(msg);
        match target {
            RepoPath::Summary => self.serve_summary(msg, request, false, head),
            RepoPath::SummarySig => self.serve_summary(msg, request, true, head),
            RepoPath::File {
                kind: FileKind::Config,
                ..
            } => self.serve_config(msg, head),
            RepoPath::File { relative, kind } => self.serve_file(msg, &relative, kind, head),
        }
    }

    /// The `[core]` part of the config only: remotes (URLs, key paths) and Ferry's
    /// own settings are nobody else's business, and pulls read nothing more.
    fn serve_config(&self, msg: &soup::ServerMessage, head: bool) {
        let Ok(config) = RepoConfig::load(&self.root) else {
            return self.not_found(msg);
        };
        let mode = config.mode().map_or("archive-z2", |m| m.as_str());
        let mut text = format!("[core]\nrepo_version=1\nmode={mode}\n");
        if let Ok(Some(id)) = config.collection_id() {
            text.push_str(&format!("collection-id={id}\n"));
        }
        let etag = format!(
            "\"c-{}\"",
            &crate::repo::Checksum::digest(text.as_bytes()).to_hex()[..24]
        );
        let last_modified = std::fs::metadata(self.root.join("config"))
            .ok()
            .and_then(|m| u64::try_from(m.mtime()).ok())
            .unwrap_or_else(now_secs);
        self.respond(
            msg,
            glib::Bytes::from_owned(text.into_bytes()),
            &etag,
            last_modified,
            head,
        );
    }

    fn not_found(&self, msg: &soup::ServerMessage) {
        self.bump(|s| s.not_found += 1);
        set_status(msg, 404);
    }

    fn serve_summary(
        self: &Rc<Self>,
        msg: &soup::ServerMessage,
        request: Rc<RequestState>,
        signature: bool,
        head: bool,
    ) {
        let fingerprint = RepoFingerprint::of(&self.root);
        let current = {
            let mut state = self.summary.borrow_mut();
            if state.regenerating || state.fingerprint != fingerprint {
                msg.pause();
                state.waiting.push(Waiting {
                    msg: msg.clone(),
                    request,
                    signature,
                    head,
                });
                None
            } else {
                Some(state.current.clone())
            }
        };
        match current {
            Some(current) => self.respond_summary(msg, &current, signature, head),
            None => self.refresh(fingerprint),
        }
    }

    fn respond_summary(
        &self,
        msg: &soup::ServerMessage,
        current: &ServedSummary,
        signature: bool,
        head: bool,
    ) {
        let data = if signature {
            match &current.signature {
                Some(sig) => sig.clone(),
                None => return self.not_found(msg),
            }
        } else {
            current.bytes.clone()
        };
        let last_modified = if current.last_modified > 0 {
            current.last_modified
        } else {
            now_secs()
        };
        let etag = if signature {
            format!("{}-sig\"", current.etag.trim_end_matches('"'))
        } else {
            current.etag.clone()
        };
        self.respond(msg, data, &etag, last_modified, head);
    }

    /// Regenerates the summary on a worker thread if the refs changed.
    fn refresh(self: &Rc<Self>, fingerprint: RepoFingerprint) {
        {
            let mut state = self.summary.borrow_mut();
            if state.regenerating || (state.fingerprint == fingerprint && state.waiting.is_empty())
            {
                return;
            }
            state.regenerating = true;
        }
        let repo = self.repo.clone();
        let cache = self.cache.clone();
        let weak = Rc::downgrade(self);
        glib::spawn_future_local(async move {
            let result = gio::spawn_blocking(move || servable_refs(&repo, &cache)).await;
            if let Some(inner) = weak.upgrade() {
                let result = match result {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("the summary generation panicked".to_owned()),
                };
                inner.finish_refresh(fingerprint, result);
            }
        });
    }

    fn finish_refresh(
        self: &Rc<Self>,
        fingerprint: RepoFingerprint,
        result: Result<ServableRefs, String>,
    ) {
        let mut changed = None;
        let (waiting, current) = {
            let mut state = self.summary.borrow_mut();
            state.regenerating = false;
            state.fingerprint = fingerprint;
            match result {
                Ok(refs) if !state.current.same_as(&refs) => {
                    // Strictly later than what peers saw, so they notice the change.
                    let last_modified = now_secs().max(state.current.last_modified + 1);
                    match ServedSummary::new(refs, last_modified) {
                        Ok(served) => {
                            state.current = Rc::new(served);
                            changed = Some(state.current.clone());
                        }
                        Err(e) => eprintln!("ferry: cannot build the summary: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("ferry: cannot list the refs to serve: {e}"),
            }
            (std::mem::take(&mut state.waiting), state.current.clone())
        };
        for waiting in waiting {
            if !waiting.request.done.get() && !self.stopped.get() {
                self.respond_summary(&waiting.msg, &current, waiting.signature, waiting.head);
                waiting.msg.unpause();
            }
        }
        if let Some(summary) = changed {
            for listener in self.summary_listeners.borrow().iter() {
                listener(&summary);
            }
        }
    }

    fn serve_file(&self, msg: &soup::ServerMessage, relative: &str, kind: FileKind, head: bool) {
        let file = match open_beneath(&self.root_fd, relative, kind.follows_symlinks()) {
            Ok(file) => file,
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                self.bump(|s| s.busy += 1);
                set_status(msg, 503);
                return;
            }
            Err(_) => return self.not_found(msg),
        };
        let Ok(meta) = file.metadata() else {
            return self.not_found(msg);
        };
        if !meta.file_type().is_file() {
            return self.not_found(msg);
        }
        let etag = format!(
            "\"{:x}-{:x}-{:x}.{:x}\"",
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let last_modified = u64::try_from(meta.mtime()).unwrap_or(0);
        if head || self.is_not_modified(msg, &etag, last_modified) {
            // No body: the length is what a GET would send.
            return self.respond_headers(msg, meta.size(), &etag, last_modified, head);
        }
        match map_file(&file, meta.size()) {
            Ok(data) => self.respond(msg, data, &etag, last_modified, false),
            Err(_) => {
                set_status(msg, 500);
            }
        }
    }

    fn is_not_modified(&self, msg: &soup::ServerMessage, etag: &str, last_modified: u64) -> bool {
        let Some(headers) = msg.request_headers() else {
            return false;
        };
        let if_none_match = headers.one("If-None-Match");
        let if_modified_since = headers
            .one("If-Modified-Since")
            .and_then(|date| soup::date_time_new_from_http_string(&date))
            .and_then(|date| u64::try_from(date.to_unix()).ok());
        not_modified(
            if_none_match.as_deref(),
            if_modified_since,
            etag,
            last_modified,
        )
    }

    fn set_validators(msg: &soup::ServerMessage, etag: &str, last_modified: u64) {
        if let Some(headers) = msg.response_headers() {
            headers.replace("ETag", etag);
            if let Some(date) = glib::DateTime::from_unix_utc(last_modified as i64)
                .ok()
                .and_then(|d| soup::date_time_to_string(&d, soup::DateFormat::Http))
            {
                headers.replace("Last-Modified", &date);
            }
        }
    }

    /// Headers only: a HEAD, or a 304 when the client's copy is current.
    fn respond_headers(
        &self,
        msg: &soup::ServerMessage,
        len: u64,
        etag: &str,
        last_modified: u64,
        head: bool,
    ) {
        Self::set_validators(msg, etag, last_modified);
        if head && !self.is_not_modified(msg, etag, last_modified) {
            set_status(msg, 200);
            if let Some(headers) = msg.response_headers() {
                headers.replace("Content-Type", "application/octet-stream");
                headers.set_content_length(len as i64);
            }
        } else {
            self.bump(|s| s.not_modified += 1);
            set_status(msg, 304);
        }
    }

    fn respond(
        &self,
        msg: &soup::ServerMessage,
        data: glib::Bytes,
        etag: &str,
        last_modified: u64,
        head: bool,
    ) {
        if head || self.is_not_modified(msg, etag, last_modified) {
            return self.respond_headers(msg, data.len() as u64, etag, last_modified, head);
        }
        Self::set_validators(msg, etag, last_modified);
        set_status(msg, 200);
        if let Some(headers) = msg.response_headers() {
            headers.replace("Content-Type", "application/octet-stream");
            headers.set_encoding(soup::Encoding::ContentLength);
            headers.set_content_length(data.len() as i64);
        }
        send_body(msg, data, self.upload_cap.as_deref());
    }
}

/// Pending connections the kernel queues for accepting. GLib's default (10) makes
/// a burst of connections wait for SYN retransmits (a second each).
const LISTEN_BACKLOG: i32 = 1024;

/// A listening TCP socket on `ip:port`, with a deep backlog.
fn listening_socket(ip: IpAddr, port: u16) -> Result<gio::Socket, glib::Error> {
    let family = match ip {
        IpAddr::V4(_) => gio::SocketFamily::Ipv4,
        IpAddr::V6(_) => gio::SocketFamily::Ipv6,
    };
    let socket = gio::Socket::new(family, gio::SocketType::Stream, gio::SocketProtocol::Tcp)?;
    if ip.is_ipv6() {
        // IPv4 has its own socket.
        socket.set_option(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    // Accepted in batches until the queue is empty: never wait in accept().
    socket.set_blocking(false);
    socket.set_listen_backlog(LISTEN_BACKLOG);
    socket.bind(
        &gio::InetSocketAddress::new(&gio::InetAddress::from(ip), port),
        true,
    )?;
    socket.listen()?;
    Ok(socket)
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

/// RFC 9110 §13.2.2: If-None-Match decides when present; otherwise
/// If-Modified-Since (whole seconds).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<u64>,
    etag: &str,
    last_modified: u64,
) -> bool {
    if let Some(list) = if_none_match {
        let ours = etag.trim_start_matches("W/");
        return list
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    if_modified_since.is_some_and(|since| last_modified <= since)
}

fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated path; the fd is owned by the returned OwnedFd.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `relative` (a whitelisted path) for reading, never leaving `dir`.
/// `follow`: symlinks may be followed while they stay beneath `dir` (ref aliases);
/// otherwise any symlink on the way is refused.
pub fn open_beneath(dir: &OwnedFd, relative: &str, follow: bool) -> io::Result<File> {
    // O_NONBLOCK: a FIFO planted under an object's name cannot hang the server.
    let mut flags = libc::O_RDONLY | libc::O_NONBLOCK;
    let mut resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    if !follow {
        flags |= libc::O_NOFOLLOW;
        resolve |= libc::RESOLVE_NO_SYMLINKS;
    }
    match beneath::openat2(dir, Path::new(relative), flags, resolve) {
        // No openat2 (old kernel, or a seccomp filter): walk without any symlink.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            open_without_symlinks(dir, relative, flags | libc::O_CLOEXEC | libc::O_NOCTTY)
        }
        result => result,
    }
}

fn open_without_symlinks(dir: &OwnedFd, relative: &str, flags: libc::c_int) -> io::Result<File> {
    let components: Vec<&str> = relative.split('/').collect();
    let mut current: Option<OwnedFd> = None;
    for (i, component) in components.iter().enumerate() {
        if component.is_empty() || *component == "." || *component == ".." {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let name = CString::new(*component).map_err(io::Error::other)?;
        let last = i + 1 == components.len();
        let at = current
            .as_ref()
            .map_or(dir.as_raw_fd(), |fd| fd.as_raw_fd());
        let open_flags = if last {
            flags | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        // SAFETY: valid dirfd and NUL-terminated name.
        let fd = unsafe { libc::openat(at, name.as_ptr(), open_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if last {
            return Ok(File::from(fd));
        }
        current = Some(fd);
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

/// Lets the process hold as many descriptors as it may (connections, mapped files):
/// running out would stop soup from accepting connections at all.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max.min(65536).max(limit.rlim_cur);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// One address of this computer: its interface's name, whether that interface is
/// the loopback one, and the address (IPv4, or global IPv6: link-local addresses
/// need a zone, which cannot go into a URL).
struct InterfaceAddress {
    interface: String,
    loopback: bool,
    ip: IpAddr,
}

/// Every IPv4 and global IPv6 address of this computer's interfaces.
fn interface_address_list() -> Vec<InterfaceAddress> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs' list is walked read-only and freed once.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            let ip = if addr.is_null() {
                None
            } else {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        Some(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                        ((ip.segments()[0] & 0xffc0) != 0xfe80).then_some(IpAddr::V6(ip))
                    }
                    _ => None,
                }
            };
            if let Some(ip) = ip {
                out.push(InterfaceAddress {
                    interface: std::ffi::CStr::from_ptr((*entry).ifa_name)
                        .to_string_lossy()
                        .into_owned(),
                    loopback: (*entry).ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0,
                    ip,
                });
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// This computer's addresses of one family: IPv4, or global IPv6. Loopback last.
pub fn local_addresses(ipv4: bool) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = interface_address_list()
        .into_iter()
        .map(|a| a.ip)
        .filter(|ip| ip.is_ipv4() == ipv4)
        .collect();
    out.sort_by_key(|ip| (ip.is_loopback(), *ip));
    out.dedup();
    out
}

/// The addresses of the interfaces `interfaces` allows: IPv4 and global IPv6; for
/// [`LanInterfaces::Off`], the loopback interface's.
pub fn interface_addresses(interfaces: &LanInterfaces) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = interface_address_list()
        .into_iter()
        .filter(|a| match interfaces {
            LanInterfaces::Off => a.loopback,
            LanInterfaces::AllNonLoopback => !a.loopback,
            LanInterfaces::Only(names) => names.contains(&a.interface),
        })
        .map(|a| a.ip)
        .collect();
    out.sort();
    out.dedup();
    out
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
