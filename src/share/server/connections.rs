//! Accepting connections: listening sockets, per-client limits and queues, the
//! request phase and its timeouts, and the periodic tick that enforces them.

use super::*;

/// How long a refused request's connection stays open after the answer, so the
/// client reads it before the close (which resets a connection with unread data).
pub(super) const LINGER: Duration = Duration::from_secs(1);
/// How long soup may take to close a connection shut down here before it is
/// forgotten anyway.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(super) type ConnId = u64;

/// Who a connection is from, for the per-client limits: an IPv4 address, or an
/// IPv6 /64 (one host usually has a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum ClientKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl ClientKey {
    pub(super) fn of(ip: IpAddr) -> Self {
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
pub(super) enum Phase {
    /// Accepted, its request not read yet.
    Request,
    /// Its request read: being answered.
    Answering,
    /// Refused before its body; taken from soup, closed after [`LINGER`].
    Closing(Instant),
}

/// A connection handed to soup.
pub(super) struct Conn {
    pub(super) client: ClientKey,
    pub(super) socket: gio::Socket,
    pub(super) accepted: Instant,
    pub(super) msg: Option<glib::WeakRef<soup::ServerMessage>>,
    pub(super) phase: Phase,
    /// When it was shut down here (timed out or evicted).
    pub(super) shut: Option<Instant>,
    /// The stream taken back from soup (dropping it closes the socket).
    pub(super) stolen: Option<gio::IOStream>,
}

/// An accepted connection waiting for one of its client's others to end.
pub(super) struct Queued {
    pub(super) socket: gio::Socket,
    pub(super) accepted: Instant,
}

#[derive(Default)]
pub(super) struct Client {
    /// Connections handed to soup.
    pub(super) connections: usize,
    pub(super) queue: VecDeque<Queued>,
}

#[derive(Default)]
pub(super) struct Connections {
    pub(super) next_id: ConnId,
    /// Connections handed to soup, oldest first.
    pub(super) open: BTreeMap<ConnId, Conn>,
    pub(super) clients: HashMap<ClientKey, Client>,
    pub(super) queued: usize,
    /// The connection being handed to soup (its first request starts at once).
    pub(super) accepting: Option<ConnId>,
    /// Responses in progress.
    pub(super) active: usize,
}

impl Connections {
    /// `client` has one connection less; its next queued one, if any, takes the
    /// place (and is counted already).
    pub(super) fn release(&mut self, client: ClientKey) -> Option<Queued> {
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
pub(super) struct Listener {
    pub(super) ip: IpAddr,
    pub(super) socket: gio::Socket,
    pub(super) watch: glib::Source,
}

impl Inner {
    /// Listens on `wanted` and nowhere else. Returns why addresses could not be
    /// listened on (each is tried again on the next call).
    pub(super) fn sync_listeners(self: &Rc<Self>, wanted: &[IpAddr]) -> Vec<ShareError> {
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
    pub(super) fn watch_listener(self: &Rc<Self>, socket: &gio::Socket) -> glib::Source {
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

    pub(super) fn accept_ready(self: &Rc<Self>, listening: &gio::Socket) -> glib::ControlFlow {
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

    pub(super) fn rewatch(self: &Rc<Self>, socket: &gio::Socket) {
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
    pub(super) fn accepted(self: &Rc<Self>, socket: gio::Socket) {
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
    pub(super) fn serve_connection(
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
    pub(super) fn evict_pending(&self) {
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
    pub(super) fn forget(self: &Rc<Self>, id: ConnId) {
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
    pub(super) fn connection_ended(self: &Rc<Self>, id: ConnId) {
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
    pub(super) fn got_headers(self: &Rc<Self>, id: ConnId, msg: &soup::ServerMessage) {
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
    pub(super) fn request_started(self: &Rc<Self>, msg: &soup::ServerMessage) {
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

    pub(super) fn tick(self: &Rc<Self>) {
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

    pub(super) fn track_request(self: &Rc<Self>, msg: &soup::ServerMessage) -> Rc<RequestState> {
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
}

/// Pending connections the kernel queues for accepting. GLib's default (10) makes
/// a burst of connections wait for SYN retransmits (a second each).
pub(super) const LISTEN_BACKLOG: i32 = 1024;

/// A listening TCP socket on `ip:port`, with a deep backlog.
pub(super) fn listening_socket(ip: IpAddr, port: u16) -> Result<gio::Socket, glib::Error> {
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

/// Lets the process hold as many descriptors as it may (connections, mapped files):
/// running out would stop soup from accepting connections at all.
pub(super) fn raise_fd_limit() {
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
