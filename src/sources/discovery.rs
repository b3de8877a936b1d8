//! [`Discovery`]: one live list of sources — drives, nearby computers, the upstream
//! and static sources — kept on the GLib main context, with events on channels.
//!
//! Every source's refs are learnt once per change (a drive is scanned when it is
//! mounted or changes; a summary is fetched when a source appears or re-advertises
//! a different summary) and shared by every consumer.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use gio::prelude::*;

use super::error::{SourcesError, SummaryError};
use super::http;
use super::lan::txt::{RepoAdvert, TxtAttributes};
use super::lan::{self, LanBrowser, LanInterfaces};
use super::locality::Locality;
use super::model::{
    CollectionRef, RejectReason, Rejection, Source, SourceEvent, SourceKind, SourceState,
};
use super::mounts::{self, ScanResult};
use super::own_repo::OwnRepo;
use super::summary::SummaryInfo;
use crate::repo::beneath;
use crate::repo::config::RemoteConfig;
use crate::trust::TrustPolicy;

/// The log domain of discovery messages.
pub const LOG_DOMAIN: &str = "ferry";

/// What to discover, and how.
#[derive(Clone, Debug)]
pub struct DiscoveryOptions {
    /// Watch mounted drives (`gio::VolumeMonitor`).
    pub mounts: bool,
    /// Offer the remotes of tracked refs as internet sources.
    pub upstream: bool,
    /// Which interfaces to browse DNS-SD on.
    pub lan: LanInterfaces,
    /// Sources given by hand, in addition to `[ferry] static-sources`.
    pub static_sources: Vec<String>,
    /// Directories of symlinks to repositories (or to drive roots), in addition to
    /// `[ferry] sideload-dirs`.
    pub sideload_dirs: Vec<PathBuf>,
    /// How long [`Discovery::settled`] waits for LAN peers to answer at start.
    pub lan_settle: Duration,
    /// HTTP timeout for summary fetches.
    pub http_timeout: Duration,
    /// Fetch internet sources' summaries on a metered connection too (else they
    /// wait, unfetched, until the connection is not metered or this is allowed).
    pub allow_metered: bool,
}

/// The discovery switches a user gives (`ferryctl`'s global flags, the window's
/// command-line options): which kinds of sources to look at, and sources by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoverySwitches {
    /// Do not look for nearby computers.
    pub no_lan: bool,
    /// Do not look at mounted drives.
    pub no_mounts: bool,
    /// Sources given by hand: `http://HOST:PORT/PATH` or `file:///PATH`.
    pub static_sources: Vec<String>,
    /// Directories of symlinks to repositories (or drive roots), used like drives.
    pub sideload_dirs: Vec<PathBuf>,
    /// Use internet sources on a metered connection.
    pub allow_metered: bool,
}

impl DiscoverySwitches {
    /// Turns off in `options` what these switches turn off (drives, the LAN); the
    /// rest of `options` stays.
    pub fn narrow(&self, options: &mut DiscoveryOptions) {
        if self.no_lan {
            options.lan = LanInterfaces::Off;
        }
        if self.no_mounts {
            options.mounts = false;
        }
    }

    /// Discovery options for these switches. LAN interfaces come from
    /// `FERRY_LAN_INTERFACES` (comma-separated names, `none`, or `all`; unset means
    /// every non-loopback interface) unless `no_lan` is set.
    pub fn options(&self) -> Result<DiscoveryOptions, SourcesError> {
        let lan = if self.no_lan {
            LanInterfaces::Off
        } else {
            LanInterfaces::from_env()?
        };
        Ok(DiscoveryOptions {
            mounts: !self.no_mounts,
            lan,
            static_sources: self.static_sources.clone(),
            sideload_dirs: self.sideload_dirs.clone(),
            allow_metered: self.allow_metered,
            ..DiscoveryOptions::default()
        })
    }
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            mounts: true,
            upstream: true,
            lan: LanInterfaces::AllNonLoopback,
            static_sources: Vec::new(),
            sideload_dirs: Vec::new(),
            lan_settle: Duration::from_secs(2),
            http_timeout: Duration::from_secs(10),
            allow_metered: false,
        }
    }
}

/// Where an entry came from; decides how it is refreshed and removed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Mount(PathBuf),
    Sideload(PathBuf),
    Lan {
        fullname: String,
        advert: Box<RepoAdvert>,
    },
    Upstream {
        collection_id: Option<String>,
        /// Set when the remote verifies its summary: `summary.sig` must verify.
        summary_trust: Option<Box<RemoteConfig>>,
    },
    Static,
}

struct Entry {
    source: Source,
    origin: Origin,
    summary: Option<Arc<SummaryInfo>>,
    /// Bumped whenever the entry is (re)started; stale fetch results are dropped.
    generation: u64,
    /// Whether consumers see it (LAN peers only once their summary confirms them).
    visible: bool,
    /// What was last sent to consumers.
    emitted: Option<Source>,
    /// Failed fetch attempts in a row (LAN and static sources are retried).
    failures: u32,
}

struct Inner {
    options: DiscoveryOptions,
    local: OwnRepo,
    tracked: Vec<CollectionRef>,
    context: glib::MainContext,
    http: crate::transport::HttpClient,
    cancellable: gio::Cancellable,
    entries: RefCell<BTreeMap<String, Entry>>,
    subscribers: RefCell<Vec<async_channel::Sender<SourceEvent>>>,
    rejections: RefCell<Vec<Rejection>>,
    next_generation: Cell<u64>,
    busy: Cell<u32>,
    idle_waiters: RefCell<Vec<async_channel::Sender<()>>>,
    /// Live mount roots and their scan generation.
    mounts: RefCell<HashMap<PathBuf, u64>>,
    volume_monitor: RefCell<Option<(gio::VolumeMonitor, Vec<glib::SignalHandlerId>)>>,
    dir_monitors: RefCell<Vec<gio::FileMonitor>>,
    sideload_pending: Cell<bool>,
    lan: RefCell<Option<LanBrowser>>,
    tasks: RefCell<Vec<glib::JoinHandle<()>>>,
    stopped: Cell<bool>,
    /// Whether internet sources are fetched on a metered connection (follows
    /// [`Discovery::set_allow_metered`]).
    allow_metered: Cell<bool>,
    /// Watched so that internet sources spared while metered are fetched once the
    /// connection is not.
    network: RefCell<Option<(gio::NetworkMonitor, glib::SignalHandlerId)>>,
}

/// Discovery of sources. Cheap to clone; every clone is the same discovery. Must be
/// created and used on the thread that owns the thread-default main context, which
/// must be iterated for anything to happen.
#[derive(Clone)]
pub struct Discovery {
    inner: Rc<Inner>,
}

/// Decrements the busy count when dropped.
struct BusyGuard(Weak<Inner>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            let n = inner.busy.get().saturating_sub(1);
            inner.busy.set(n);
            if n == 0 {
                for waiter in inner.idle_waiters.take() {
                    let _ = waiter.try_send(());
                }
            }
        }
    }
}

fn kind_order(kind: SourceKind) -> u8 {
    match kind {
        SourceKind::Usb => 0,
        SourceKind::Lan => 1,
        SourceKind::Static => 2,
        SourceKind::Internet => 3,
    }
}

/// Sorts sources the way they are best shown: drives, nearby computers, static
/// sources, the internet; then by name.
pub fn sort_sources(sources: &mut [Source]) {
    sources.sort_by(|a, b| {
        (kind_order(a.kind), &a.name, &a.id).cmp(&(kind_order(b.kind), &b.name, &b.id))
    });
}

fn uri_host(uri: &str) -> Option<String> {
    glib::Uri::parse(uri, glib::UriFlags::NONE)
        .ok()?
        .host()
        .map(|h| h.to_string())
        .filter(|h| !h.is_empty())
}

/// Normalizes a static source: `http(s)://` and `file://` URIs as given (without a
/// trailing slash); an absolute path becomes a `file://` URI.
pub fn normalize_source_uri(uri: &str) -> Result<String, SourcesError> {
    let invalid = |reason: &str| SourcesError::InvalidUri {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = uri.trim();
    if trimmed.starts_with('/') {
        return Ok(gio::File::for_path(trimmed)
            .uri()
            .trim_end_matches('/')
            .to_owned());
    }
    let parsed =
        glib::Uri::parse(trimmed, glib::UriFlags::NONE).map_err(|e| invalid(e.message()))?;
    match parsed.scheme().as_str() {
        "http" | "https" if parsed.host().is_some_and(|h| !h.is_empty()) => {}
        "http" | "https" => return Err(invalid("no host")),
        "file" => {}
        _ => return Err(invalid("only http, https and file URIs are supported")),
    }
    Ok(trimmed.trim_end_matches('/').to_owned())
}

impl Discovery {
    /// Loads the local repository at `repo_path` and starts discovering.
    pub fn start(repo_path: &Path, options: DiscoveryOptions) -> Result<Self, SourcesError> {
        let local = OwnRepo::load(repo_path)?;
        Self::start_with(local, options)
    }

    /// Starts discovering for an already loaded local repository.
    pub fn start_with(local: OwnRepo, options: DiscoveryOptions) -> Result<Self, SourcesError> {
        let context = glib::MainContext::ref_thread_default();
        // Futures are spawned on it from this thread: it must be ours to run.
        drop(context.acquire().map_err(|_| SourcesError::WrongContext)?);
        let mut statics: Vec<String> = Vec::new();
        for uri in &options.static_sources {
            let uri = normalize_source_uri(uri)?;
            if !statics.contains(&uri) {
                statics.push(uri);
            }
        }
        for uri in &local.static_sources {
            match normalize_source_uri(uri) {
                Ok(uri) if !statics.contains(&uri) => statics.push(uri),
                Ok(_) => {}
                Err(e) => glib::g_warning!(LOG_DOMAIN, "ignoring configured static source: {e}"),
            }
        }

        let http = crate::transport::HttpClient::new(&crate::transport::HttpSettings {
            timeout_secs: u32::try_from(options.http_timeout.as_secs())
                .unwrap_or(u32::MAX)
                .max(1),
            ..Default::default()
        });

        let tracked = local.tracked_crefs();
        let mut options = options;
        for dir in &local.sideload_dirs {
            if !options.sideload_dirs.contains(dir) {
                options.sideload_dirs.push(dir.clone());
            }
        }
        let allow_metered = Cell::new(options.allow_metered);
        let inner = Rc::new(Inner {
            options,
            local,
            tracked,
            context,
            http,
            cancellable: gio::Cancellable::new(),
            entries: RefCell::default(),
            subscribers: RefCell::default(),
            rejections: RefCell::default(),
            next_generation: Cell::new(1),
            busy: Cell::new(0),
            idle_waiters: RefCell::default(),
            mounts: RefCell::default(),
            volume_monitor: RefCell::default(),
            dir_monitors: RefCell::default(),
            sideload_pending: Cell::new(false),
            lan: RefCell::default(),
            tasks: RefCell::default(),
            stopped: Cell::new(false),
            allow_metered,
            network: RefCell::default(),
        });
        let discovery = Self { inner };
        discovery.watch_metered();
        discovery.start_upstream();
        for uri in statics {
            discovery.add_static(&uri);
        }
        if discovery.inner.options.mounts {
            discovery.start_mounts();
        }
        discovery.start_sideload();
        discovery.start_lan()?;
        Ok(discovery)
    }

    /// The local repository as discovery sees it.
    pub fn local(&self) -> &OwnRepo {
        &self.inner.local
    }

    /// The current sources, drives first.
    pub fn sources(&self) -> Vec<Source> {
        let mut out: Vec<Source> = self
            .inner
            .entries
            .borrow()
            .values()
            .filter_map(|e| e.emitted.clone())
            .collect();
        sort_sources(&mut out);
        out
    }

    /// One source by id.
    pub fn source(&self, id: &str) -> Option<Source> {
        self.inner.entries.borrow().get(id)?.emitted.clone()
    }

    /// The parsed summary of a source (internet, static and LAN sources), fetched
    /// once per change and shared by all consumers.
    pub fn summary(&self, id: &str) -> Option<Arc<SummaryInfo>> {
        let entries = self.inner.entries.borrow();
        let entry = entries.get(id)?;
        entry.emitted.as_ref()?;
        entry.summary.clone()
    }

    /// Repositories found on drives or in the sideload directory and refused, with why.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.inner.rejections.borrow().clone()
    }

    /// A new event stream. It starts with an `Added` event for every current source,
    /// then carries every change. Dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> async_channel::Receiver<SourceEvent> {
        let (sender, receiver) = async_channel::unbounded();
        for source in self.sources() {
            let _ = sender.try_send(SourceEvent::Added { source });
        }
        self.inner.subscribers.borrow_mut().push(sender);
        receiver
    }

    /// Resolves once the initial work is done: drives scanned, summaries fetched,
    /// and LAN peers given [`DiscoveryOptions::lan_settle`] to answer.
    pub async fn settled(&self) {
        loop {
            if self.inner.busy.get() == 0 {
                return;
            }
            let (sender, receiver) = async_channel::bounded(1);
            self.inner.idle_waiters.borrow_mut().push(sender);
            let _ = receiver.recv().await;
        }
    }

    /// Fetches every summary again and rescans drives and sideload directories.
    pub fn refresh(&self) {
        let ids: Vec<String> = self
            .inner
            .entries
            .borrow()
            .iter()
            .filter(|(_, e)| !matches!(e.origin, Origin::Mount(_) | Origin::Sideload(_)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.inner.restart_fetch(&id);
        }
        let roots: Vec<PathBuf> = self.inner.mounts.borrow().keys().cloned().collect();
        for root in roots {
            self.inner.rescan_mount_root(&root);
        }
        self.inner.schedule_sideload_scan();
    }

    /// Whether internet sources are fetched on a metered connection; allowing it
    /// fetches the ones spared so far.
    pub fn set_allow_metered(&self, allow: bool) {
        if self.inner.allow_metered.replace(allow) != allow {
            self.inner.fetch_internet_again();
        }
    }

    fn watch_metered(&self) {
        let monitor = gio::NetworkMonitor::default();
        let weak = Rc::downgrade(&self.inner);
        let handler = monitor.connect_network_metered_notify(move |monitor| {
            if let Some(inner) = weak.upgrade() {
                if !monitor.is_network_metered() {
                    inner.fetch_internet_again();
                }
            }
        });
        self.inner.network.replace(Some((monitor, handler)));
    }

    /// Stops discovering: drive and LAN watching end, fetches are cancelled. The list
    /// keeps its last state; subscribers' streams end.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        self.cancellable.cancel();
        if let Some((monitor, handler)) = self.network.take() {
            monitor.disconnect(handler);
        }
        if let Some((monitor, handlers)) = self.volume_monitor.take() {
            for handler in handlers {
                monitor.disconnect(handler);
            }
        }
        for monitor in self.dir_monitors.take() {
            monitor.cancel();
        }
        drop(self.lan.take());
        for task in self.tasks.take() {
            task.abort();
        }
        self.subscribers.borrow_mut().clear();
        for waiter in self.idle_waiters.take() {
            let _ = waiter.try_send(());
        }
    }

    fn busy_guard(self: &Rc<Self>) -> BusyGuard {
        self.busy.set(self.busy.get() + 1);
        BusyGuard(Rc::downgrade(self))
    }

    fn generation(&self) -> u64 {
        let g = self.next_generation.get();
        self.next_generation.set(g + 1);
        g
    }

    fn emit(&self, event: SourceEvent) {
        self.subscribers
            .borrow_mut()
            .retain(|s| s.try_send(event.clone()).is_ok());
    }

    /// Adds or replaces an entry (not yet published).
    fn upsert(&self, source: Source, origin: Origin, visible: bool) -> u64 {
        let generation = self.generation();
        let mut entries = self.entries.borrow_mut();
        match entries.get_mut(&source.id) {
            Some(entry) => {
                entry.source = source;
                entry.origin = origin;
                entry.generation = generation;
                entry.visible = visible;
                entry.summary = None;
                entry.failures = 0;
            }
            None => {
                entries.insert(
                    source.id.clone(),
                    Entry {
                        source,
                        origin,
                        summary: None,
                        generation,
                        visible,
                        emitted: None,
                        failures: 0,
                    },
                );
            }
        }
        generation
    }

    fn remove(&self, id: &str) {
        let removed = self.entries.borrow_mut().remove(id);
        if let Some(Entry {
            emitted: Some(source),
            ..
        }) = removed
        {
            self.emit(SourceEvent::Removed { source });
        }
    }

    /// Recomputes Ready/Outdated and tells consumers what changed.
    fn publish(&self) {
        let mut events = Vec::new();
        {
            let mut entries = self.entries.borrow_mut();
            // The newest known timestamp of each tracked ref, installed or offered.
            let mut newest: BTreeMap<CollectionRef, u64> = self.local.installed.clone();
            for entry in entries
                .values()
                .filter(|e| e.visible && e.source.state.is_usable())
            {
                for offered in &entry.source.refs {
                    let cref = offered.collection_ref();
                    if let (true, Some(t)) = (self.tracked.contains(&cref), offered.timestamp) {
                        let slot = newest.entry(cref).or_insert(t);
                        *slot = (*slot).max(t);
                    }
                }
            }
            for entry in entries.values_mut() {
                if entry.source.state.is_usable() {
                    let relevant: Vec<_> = entry
                        .source
                        .refs
                        .iter()
                        .filter(|r| self.tracked.contains(&r.collection_ref()))
                        .collect();
                    let outdated = !relevant.is_empty()
                        && relevant.iter().all(|r| {
                            matches!((r.timestamp, newest.get(&r.collection_ref())),
                                (Some(t), Some(n)) if t < *n)
                        });
                    entry.source.state = if outdated {
                        SourceState::Outdated
                    } else {
                        SourceState::Ready
                    };
                }
                match (&entry.emitted, entry.visible) {
                    (None, true) => {
                        entry.emitted = Some(entry.source.clone());
                        events.push(SourceEvent::Added {
                            source: entry.source.clone(),
                        });
                    }
                    (Some(old), true) if *old != entry.source => {
                        entry.emitted = Some(entry.source.clone());
                        events.push(SourceEvent::Changed {
                            source: entry.source.clone(),
                        });
                    }
                    (Some(_), false) => {
                        if let Some(source) = entry.emitted.take() {
                            events.push(SourceEvent::Removed { source });
                        }
                    }
                    _ => {}
                }
            }
        }
        for event in events {
            self.emit(event);
        }
    }

    fn spawn(self: &Rc<Self>, future: impl std::future::Future<Output = ()> + 'static) {
        let handle = self.context.spawn_local(future);
        let mut tasks = self.tasks.borrow_mut();
        tasks.retain(|t| t.as_raw_source_id().is_some() && !t.source().is_destroyed());
        tasks.push(handle);
    }

    // ---- fetching summaries -------------------------------------------------

    fn restart_fetch(self: &Rc<Self>, id: &str) {
        let generation = self.generation();
        let uri = {
            let mut entries = self.entries.borrow_mut();
            let Some(entry) = entries.get_mut(id) else {
                return;
            };
            entry.generation = generation;
            entry.source.uri.clone()
        };
        self.fetch(id.to_owned(), uri, generation, Duration::ZERO);
    }

    /// Whether `source` is an internet source not to be fetched now: the
    /// connection is metered and that is not allowed.
    fn spares_internet(&self, source: &Source) -> bool {
        !self.allow_metered.get()
            && source.locality() == Locality::Internet
            && gio::NetworkMonitor::default().is_network_metered()
    }

    /// Fetches the internet sources' summaries again (spared ones included).
    fn fetch_internet_again(self: &Rc<Self>) {
        let ids: Vec<String> = self
            .entries
            .borrow()
            .iter()
            .filter(|(_, e)| e.source.locality() == Locality::Internet)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.restart_fetch(&id);
        }
    }

    fn fetch(self: &Rc<Self>, id: String, uri: String, generation: u64, delay: Duration) {
        if self.stopped.get() {
            return;
        }
        let spared = self
            .entries
            .borrow()
            .get(&id)
            .is_some_and(|e| self.spares_internet(&e.source));
        if spared {
            // Not even the summary: on a metered connection the internet is used
            // only when allowed. The source stays `discovered`.
            glib::g_debug!(LOG_DOMAIN, "not fetching {uri}: the connection is metered");
            return;
        }
        let guard = self.busy_guard();
        let weak = Rc::downgrade(self);
        let http = self.http.clone();
        let cancellable = self.cancellable.clone();
        let summary_trust = match self.entries.borrow().get(&id).map(|e| &e.origin) {
            Some(Origin::Upstream { summary_trust, .. }) => summary_trust.clone(),
            _ => None,
        };
        let repo_path = self.local.path.clone();
        self.spawn(async move {
            let _guard = guard;
            if !delay.is_zero() {
                glib::timeout_future(delay).await;
            }
            glib::g_debug!(LOG_DOMAIN, "fetching {}", http::summary_uri(&uri));
            let mut result = http::fetch_summary(&http, &uri, &cancellable).await;
            if let (Ok(summary), Some(settings)) = (&result, &summary_trust) {
                let verified =
                    verify_summary_of(&http, &uri, summary, &repo_path, settings, &cancellable)
                        .await;
                if let Err(e) = verified {
                    result = Err(e);
                }
            }
            glib::g_debug!(
                LOG_DOMAIN,
                "fetched {}: {:?}",
                http::summary_uri(&uri),
                result.as_ref().map(|b| b.len())
            );
            if cancellable.is_cancelled() {
                return;
            }
            if let Some(inner) = weak.upgrade() {
                inner.apply_fetch(&id, generation, result);
            }
        });
    }

    fn apply_fetch(
        self: &Rc<Self>,
        id: &str,
        generation: u64,
        result: Result<glib::Bytes, SummaryError>,
    ) {
        let mut retry = None;
        {
            let mut entries = self.entries.borrow_mut();
            let Some(entry) = entries.get_mut(id) else {
                return;
            };
            if entry.generation != generation {
                return;
            }
            let parsed = result.and_then(|bytes| {
                match &entry.origin {
                    Origin::Upstream { collection_id, .. } => {
                        SummaryInfo::parse_for_remote(&bytes, collection_id.as_deref())
                    }
                    _ => SummaryInfo::parse(&bytes, None),
                }
                .map_err(SummaryError::Invalid)
            });
            match parsed {
                Ok(summary) => {
                    let summary = Arc::new(summary);
                    let refs: Vec<_> = summary
                        .refs
                        .iter()
                        .filter(|r| self.local.accepts(r))
                        .cloned()
                        .collect();
                    entry.failures = 0;
                    entry.source.state = SourceState::Ready;
                    entry.source.error = None;
                    entry.source.last_modified = summary.last_modified;
                    if let Origin::Lan { advert, .. } = &entry.origin {
                        entry.source.last_modified =
                            summary.last_modified.or(Some(advert.summary_timestamp));
                        // A bloom filter false positive: nothing we track is there.
                        let confirmed = refs
                            .iter()
                            .any(|r| self.tracked.contains(&r.collection_ref()));
                        if !confirmed {
                            glib::g_debug!(
                                LOG_DOMAIN,
                                "ignoring LAN peer {}: its summary has none of the tracked refs",
                                entry.source.uri
                            );
                        }
                        entry.visible = confirmed;
                    }
                    entry.source.refs = refs;
                    entry.summary = Some(summary);
                }
                Err(e) => {
                    entry.source.state = match &e {
                        SummaryError::Unreachable(_) => SourceState::Unreachable,
                        SummaryError::NotFound => SourceState::NotServing,
                        _ => SourceState::Failed,
                    };
                    entry.source.error = Some(e.to_string());
                    entry.source.refs.clear();
                    entry.summary = None;
                    entry.failures += 1;
                    if matches!(entry.origin, Origin::Lan { .. }) {
                        entry.visible = true;
                    }
                    // Peers often advertise before their server is up: try again.
                    if matches!(entry.origin, Origin::Lan { .. } | Origin::Static)
                        && matches!(e, SummaryError::Unreachable(_))
                        && entry.failures <= 3
                    {
                        let generation = self.generation();
                        entry.generation = generation;
                        let delay = Duration::from_secs(2u64 << entry.failures.min(4));
                        retry = Some((entry.source.uri.clone(), generation, delay));
                    }
                }
            }
        }
        self.publish();
        if let Some((uri, generation, delay)) = retry {
            // Retries do not hold up `settled()`: spawn them without a busy guard.
            self.fetch_later(id.to_owned(), uri, generation, delay);
        }
    }

    fn fetch_later(self: &Rc<Self>, id: String, uri: String, generation: u64, delay: Duration) {
        let weak = Rc::downgrade(self);
        self.spawn(async move {
            glib::timeout_future(delay).await;
            if let Some(inner) = weak.upgrade() {
                inner.fetch(id, uri, generation, Duration::ZERO);
            }
        });
    }

    // ---- upstream and static sources ---------------------------------------------

    fn add_fetched_source(self: &Rc<Self>, source: Source, origin: Origin) {
        let id = source.id.clone();
        let uri = source.uri.clone();
        let generation = self.upsert(source, origin, true);
        self.publish();
        self.fetch(id, uri, generation, Duration::ZERO);
    }
}

/// Fetches `BASE/summary.sig` and checks it against `summary` as the remote's
/// `gpg-verify-summary` / `sign-verify-summary` require (libostree's rule for the
/// remote's own URL); a missing or bad signature refuses the source.
async fn verify_summary_of(
    http: &crate::transport::HttpClient,
    uri: &str,
    summary: &glib::Bytes,
    repo_path: &Path,
    settings: &RemoteConfig,
    cancellable: &gio::Cancellable,
) -> Result<(), SummaryError> {
    let setting = match (settings.gpg_verify_summary, settings.sign_verify_summary) {
        (true, true) => "gpg-verify-summary=true and sign-verify-summary=true",
        (true, false) => "gpg-verify-summary=true",
        _ => "sign-verify-summary=true",
    };
    let untrusted = |reason: String| SummaryError::Untrusted {
        remote: settings.name.clone(),
        setting: setting.to_owned(),
        reason,
    };
    glib::g_debug!(LOG_DOMAIN, "fetching {}.sig", http::summary_uri(uri));
    let signature = http::fetch_summary_sig(http, uri, cancellable).await?;
    let policy =
        TrustPolicy::for_remote(repo_path, settings).map_err(|e| untrusted(e.to_string()))?;
    policy
        .verify_summary(summary, signature.as_deref())
        .map(|_| ())
        .map_err(|e| match signature {
            None => untrusted(format!("{e}: there is no summary.sig")),
            Some(_) => untrusted(e.to_string()),
        })
}

impl Discovery {
    fn start_upstream(&self) {
        if !self.inner.options.upstream {
            return;
        }
        let remotes: Vec<_> = self
            .inner
            .local
            .upstream_remotes()
            .into_iter()
            .cloned()
            .collect();
        for remote in remotes {
            let url = remote.url.trim_end_matches('/').to_owned();
            let name = uri_host(&url).unwrap_or_else(|| remote.name.clone());
            let mut source = Source::new(
                format!("upstream:{}", remote.name),
                SourceKind::Internet,
                name,
                url,
            );
            source.remote = Some(remote.name.clone());
            self.inner.add_fetched_source(
                source,
                Origin::Upstream {
                    collection_id: remote.collection_id.clone(),
                    summary_trust: remote.summary_trust.clone().map(Box::new),
                },
            );
        }
    }

    fn add_static(&self, uri: &str) {
        let name = uri_host(uri).unwrap_or_else(|| uri.to_owned());
        let source = Source::new(
            format!("static:{uri}"),
            SourceKind::Static,
            name,
            uri.to_owned(),
        );
        self.inner.add_fetched_source(source, Origin::Static);
    }

    // ---- drives ------------------------------------------------------------------

    fn start_mounts(&self) {
        let monitor = gio::VolumeMonitor::get();
        let mut handlers = Vec::new();
        let weak = Rc::downgrade(&self.inner);
        handlers.push(monitor.connect_mount_added(move |_, mount| {
            if let Some(inner) = weak.upgrade() {
                inner.mount_appeared(mount);
            }
        }));
        let weak = Rc::downgrade(&self.inner);
        handlers.push(monitor.connect_mount_changed(move |_, mount| {
            if let Some(inner) = weak.upgrade() {
                inner.mount_appeared(mount);
            }
        }));
        let weak = Rc::downgrade(&self.inner);
        handlers.push(monitor.connect_mount_removed(move |_, mount| {
            if let Some(inner) = weak.upgrade() {
                inner.mount_gone(mount);
            }
        }));
        let weak = Rc::downgrade(&self.inner);
        handlers.push(monitor.connect_mount_pre_unmount(move |_, mount| {
            if let Some(inner) = weak.upgrade() {
                inner.mount_gone(mount);
            }
        }));
        let existing = monitor.mounts();
        // Keep a strong reference: the monitor stops emitting once dropped.
        *self.inner.volume_monitor.borrow_mut() = Some((monitor, handlers));
        for mount in existing {
            self.inner.mount_appeared(&mount);
        }
    }

    fn start_sideload(&self) {
        let dirs = self.inner.options.sideload_dirs.clone();
        if dirs.is_empty() {
            return;
        }
        for dir in &dirs {
            let file = gio::File::for_path(dir);
            match file
                .monitor_directory(gio::FileMonitorFlags::WATCH_MOUNTS, gio::Cancellable::NONE)
            {
                Ok(monitor) => {
                    monitor.set_rate_limit(100);
                    let weak = Rc::downgrade(&self.inner);
                    monitor.connect_changed(move |_, _, _, _| {
                        if let Some(inner) = weak.upgrade() {
                            inner.schedule_sideload_scan();
                        }
                    });
                    self.inner.dir_monitors.borrow_mut().push(monitor);
                }
                Err(e) => glib::g_warning!(
                    LOG_DOMAIN,
                    "cannot watch sideload directory {}: {}",
                    dir.display(),
                    e.message()
                ),
            }
        }
        self.inner.scan_sideload_now();
    }

    // ---- nearby computers ------------------------------------------------------

    fn start_lan(&self) -> Result<(), SourcesError> {
        let Some((browser, receiver)) = LanBrowser::start(&self.inner.options.lan)? else {
            return Ok(());
        };
        *self.inner.lan.borrow_mut() = Some(browser);
        // Give peers time to answer before `settled()` resolves.
        let guard = self.inner.busy_guard();
        let settle = self.inner.options.lan_settle;
        self.inner.spawn(async move {
            glib::timeout_future(settle).await;
            drop(guard);
        });
        let weak = Rc::downgrade(&self.inner);
        self.inner.spawn(async move {
            while let Ok(event) = receiver.recv_async().await {
                let Some(inner) = weak.upgrade() else { break };
                inner.lan_event(event);
            }
        });
        Ok(())
    }
}

impl Inner {
    fn mount_root(mount: &gio::Mount) -> Option<PathBuf> {
        mount.root().path()
    }

    fn mount_appeared(self: &Rc<Self>, mount: &gio::Mount) {
        if self.stopped.get() {
            return;
        }
        let Some(root) = Self::mount_root(mount) else {
            return;
        };
        if mount.is_shadowed() {
            glib::g_debug!(LOG_DOMAIN, "ignoring shadowed mount {}", root.display());
            self.forget_mount(&root);
            return;
        }
        let volume_name = mount.volume().map(|v| v.name().to_string());
        let mount_name = mount.name().to_string();
        self.mounts.borrow_mut().insert(root.clone(), 0);
        self.scan_mount(root, volume_name, mount_name);
        // A sideload link may point into this drive.
        self.schedule_sideload_scan();
    }

    fn rescan_mount_root(self: &Rc<Self>, root: &Path) {
        let monitor = self
            .volume_monitor
            .borrow()
            .as_ref()
            .map(|(m, _)| m.clone());
        let Some(monitor) = monitor else { return };
        if let Some(mount) = monitor
            .mounts()
            .into_iter()
            .find(|m| Self::mount_root(m).as_deref() == Some(root))
        {
            self.mount_appeared(&mount);
        }
    }

    fn scan_mount(self: &Rc<Self>, root: PathBuf, volume_name: Option<String>, mount_name: String) {
        let generation = self.generation();
        self.mounts.borrow_mut().insert(root.clone(), generation);
        let guard = self.busy_guard();
        let weak = Rc::downgrade(self);
        let local = self.local.id;
        self.spawn(async move {
            let _guard = guard;
            let scan_root = root.clone();
            // On a thread of its own with a deadline: a drive that hangs is
            // reported, and blocks neither other sources nor `settled()`.
            let scanned = beneath::off_thread(beneath::drive_deadline(), move || {
                if mounts::is_system_mount(&scan_root) {
                    return None;
                }
                let label = mounts::fs_label(&scan_root);
                Some((label, mounts::scan_mount_root(&scan_root, local)))
            })
            .await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.mounts.borrow().get(&root) != Some(&generation) {
                return; // unmounted or rescanned meanwhile
            }
            match scanned {
                Ok(Some((label, result))) => {
                    let name = volume_name.or(label).unwrap_or(mount_name);
                    inner.apply_scan(
                        &root,
                        Origin::Mount(root.clone()),
                        &|_| name.clone(),
                        result,
                    );
                }
                Ok(None) => {
                    glib::g_debug!(LOG_DOMAIN, "ignoring system mount {}", root.display());
                }
                Err(e) => inner.not_answering(&root, Origin::Mount(root.clone()), e),
            }
        });
    }

    fn mount_gone(self: &Rc<Self>, mount: &gio::Mount) {
        if let Some(root) = Self::mount_root(mount) {
            self.forget_mount(&root);
            self.schedule_sideload_scan();
        }
    }

    fn forget_mount(self: &Rc<Self>, root: &Path) {
        self.mounts.borrow_mut().remove(root);
        self.rejections.borrow_mut().retain(|r| r.origin != root);
        let ids: Vec<String> = self
            .entries
            .borrow()
            .iter()
            .filter(|(_, e)| matches!(&e.origin, Origin::Mount(r) if r == root))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.remove(&id);
        }
        self.publish();
    }

    /// Replaces the sources found under `origin_path` with `result`.
    fn apply_scan(
        self: &Rc<Self>,
        origin_path: &Path,
        origin: Origin,
        name_of: &dyn Fn(&Path) -> String,
        result: ScanResult,
    ) {
        {
            let mut rejections = self.rejections.borrow_mut();
            for rejection in &result.rejections {
                if !rejections.contains(rejection) {
                    glib::g_warning!(LOG_DOMAIN, "{rejection}");
                }
            }
            rejections.retain(|r| r.origin != origin_path);
            rejections.extend(result.rejections);
        }
        let mut keep = Vec::new();
        for found in result.repos {
            let refs: Vec<_> = found
                .repo
                .refs
                .iter()
                .filter(|r| self.local.accepts(r))
                .cloned()
                .collect();
            if refs.is_empty() {
                glib::g_debug!(
                    LOG_DOMAIN,
                    "not offering {}: no collection the local repository has a remote for",
                    found.found_at.display()
                );
                continue;
            }
            let id = format!(
                "usb:{}:{}",
                origin_path.display(),
                found.repo.path.display()
            );
            let uri = gio::File::for_path(&found.repo.path).uri().to_string();
            let mut source =
                Source::new(id.clone(), SourceKind::Usb, name_of(&found.found_at), uri);
            source.refs = refs;
            source.last_modified = found.repo.last_modified;
            source.state = SourceState::Ready;
            let unchanged = self.entries.borrow().get(&id).is_some_and(|e| {
                e.emitted.as_ref().is_some_and(|old| {
                    old.refs == source.refs
                        && old.name == source.name
                        && old.last_modified == source.last_modified
                })
            });
            if !unchanged {
                self.upsert(source, origin.clone(), true);
            }
            keep.push(id);
        }
        let stale: Vec<String> = self
            .entries
            .borrow()
            .iter()
            .filter(|(id, e)| e.origin == origin && !keep.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove(&id);
        }
        self.publish();
    }

    /// A drive (or sideload directory) whose scan did not finish in time: its
    /// sources are withdrawn and it is listed as refused, not answering.
    fn not_answering(
        self: &Rc<Self>,
        origin_path: &Path,
        origin: Origin,
        e: beneath::NotAnswering,
    ) {
        let rejection = Rejection {
            path: origin_path.to_owned(),
            origin: origin_path.to_owned(),
            reason: RejectReason::NotAnswering(e.to_string()),
        };
        self.apply_scan(
            origin_path,
            origin,
            &|p| p.display().to_string(),
            ScanResult {
                repos: Vec::new(),
                rejections: vec![rejection],
            },
        );
    }

    // ---- sideload directories -----------------------------------------------------

    fn schedule_sideload_scan(self: &Rc<Self>) {
        if self.options.sideload_dirs.is_empty() || self.sideload_pending.replace(true) {
            return;
        }
        let weak = Rc::downgrade(self);
        let guard = self.busy_guard();
        self.spawn(async move {
            glib::timeout_future(Duration::from_millis(50)).await;
            drop(guard);
            if let Some(inner) = weak.upgrade() {
                inner.sideload_pending.set(false);
                inner.scan_sideload_now();
            }
        });
    }

    fn scan_sideload_now(self: &Rc<Self>) {
        for dir in self.options.sideload_dirs.clone() {
            let generation = self.generation();
            self.mounts.borrow_mut().insert(dir.clone(), generation);
            let guard = self.busy_guard();
            let weak = Rc::downgrade(self);
            let local = self.local.id;
            self.spawn(async move {
                let _guard = guard;
                let scan_dir = dir.clone();
                let scanned = beneath::off_thread(beneath::drive_deadline(), move || {
                    mounts::scan_sideload_dir(&scan_dir, local)
                })
                .await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.mounts.borrow().get(&dir) != Some(&generation) {
                    return;
                }
                match scanned {
                    Err(e) => inner.not_answering(&dir, Origin::Sideload(dir.clone()), e),
                    Ok(result) => {
                        let base = dir.clone();
                        let name_of = move |found_at: &Path| -> String {
                            found_at
                                .strip_prefix(&base)
                                .ok()
                                .and_then(|rel| rel.components().next())
                                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                                .unwrap_or_else(|| found_at.display().to_string())
                        };
                        inner.apply_scan(&dir, Origin::Sideload(dir.clone()), &name_of, result);
                    }
                }
            });
        }
    }

    // ---- LAN ----------------------------------------------------------------------

    fn lan_event(self: &Rc<Self>, event: mdns_sd::ServiceEvent) {
        glib::g_debug!(LOG_DOMAIN, "DNS-SD: {event:?}");
        match event {
            mdns_sd::ServiceEvent::ServiceResolved(service) => self.lan_resolved(&service),
            mdns_sd::ServiceEvent::ServiceRemoved(_, fullname) => {
                let id = format!("lan:{}", lan::instance_name(&fullname));
                glib::g_debug!(LOG_DOMAIN, "LAN peer {fullname} withdrew");
                self.remove(&id);
                self.publish();
            }
            _ => {}
        }
    }

    fn lan_resolved(self: &Rc<Self>, service: &mdns_sd::ResolvedService) {
        let fullname = service.get_fullname().to_owned();
        let id = format!("lan:{}", lan::instance_name(&fullname));
        let drop_peer = |inner: &Rc<Self>, why: &str| {
            glib::g_debug!(LOG_DOMAIN, "ignoring LAN peer {fullname}: {why}");
            inner.remove(&id);
            inner.publish();
        };
        let attrs = TxtAttributes::from_mdns(service.get_properties());
        let advert = match RepoAdvert::decode(&attrs) {
            Ok(advert) => advert,
            Err(e) => return drop_peer(self, &e.to_string()),
        };
        let may_have = self.tracked.iter().any(|cref| {
            cref.collection_id
                .as_deref()
                .is_some_and(|c| advert.bloom.may_contain(c, &cref.ref_name))
        });
        if !may_have {
            return drop_peer(self, "its bloom filter has none of the tracked refs");
        }
        let Some(address) = lan::choose_address(service.get_addresses()) else {
            return drop_peer(self, "no usable address");
        };
        let uri = lan::peer_uri(address, service.get_port(), advert.repo_index);
        let origin = Origin::Lan {
            fullname: fullname.clone(),
            advert: Box::new(advert),
        };
        let unchanged = self
            .entries
            .borrow()
            .get(&id)
            .is_some_and(|e| e.origin == origin && e.source.uri == uri);
        if unchanged {
            return;
        }
        let (visible, previous) = match self.entries.borrow().get(&id) {
            Some(e) => (e.visible, Some(e.source.clone())),
            None => (false, None),
        };
        let mut source = Source::new(
            id.clone(),
            SourceKind::Lan,
            lan::display_host(service.get_hostname()).to_owned(),
            uri.clone(),
        );
        if let (Some(prev), Origin::Lan { advert, .. }) = (previous, &origin) {
            // Keep showing what is known while the new summary is fetched.
            source.refs = prev.refs;
            source.state = SourceState::Discovered;
            source.last_modified = Some(advert.summary_timestamp);
        }
        let generation = self.upsert(source, origin, visible);
        self.publish();
        self.fetch(id, uri, generation, Duration::ZERO);
    }
}
