//! `FerryUpdater`: the window's model. It drives the engine as `ferryctl update`
//! does — discovery, then `Engine::check` and `Engine::update` — and turns what
//! happens into GObject properties: the status (up to date, available, downloading,
//! ready, error …) and a `gio::ListStore` of [`FerrySource`]s.
//!
//! Engine progress arrives up to ten times a second and is sampled again here: the
//! newest report is kept and applied by a 100 ms timer, so widgets never update
//! more than ten times a second however fast events come.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use gettextrs::{gettext, ngettext};
use gtk4::{gio, glib, prelude::*, subclass::prelude::*};

use crate::cli::sources::DiscoveryArgs;
use crate::demo::DemoWorld;
use crate::fetch::engine::{
    unused_reason, Engine, EngineError, EngineEvent, EngineSettings, OverallProgress, RefPlan,
    SourceProgress, Target, TransferState,
};
use crate::repo::config::RepoConfig;
use crate::repo::store::Repo;
use crate::repo::{Checksum, RepoError};
use crate::share::server::{Listen, ServerConfig};
use crate::share::{ShareError, Sharing};
use crate::sources::{
    sort_sources, Discovery, DiscoveryOptions, LanInterfaces, Source, SourceEvent, SourceKind,
    SourceState, LOG_DOMAIN,
};
use crate::widgets::format;
use crate::widgets::FerrySource;

/// The source choice that uses every source.
pub const AUTOMATIC: &str = "automatic";
/// How often sampled progress reaches the widgets.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Source changes are collected this long before checking again.
const CHECK_DELAY: Duration = Duration::from_millis(300);

/// What the window shows in its status area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "FerryStatus")]
pub enum Status {
    /// Preparing (the demo) or looking for sources the first time.
    #[default]
    Starting,
    UpToDate,
    Available,
    /// No source has anything for the tracked refs.
    NoSources,
    Downloading,
    Ready,
    Error,
    /// Nothing is tracked: there is nothing to update.
    NothingTracked,
}

/// How Ferry was started.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The repository given with `--repo` (or `FERRY_REPO`).
    pub repo: Option<PathBuf>,
    /// Build and use the demo world.
    pub demo: bool,
    pub discovery: DiscoveryArgs,
}

impl Launch {
    /// Whether Ferry should show the demo: asked for, or nothing given and the
    /// default repository tracks nothing.
    pub fn wants_demo(&self) -> bool {
        self.demo
            || (self.repo.is_none()
                && RepoConfig::load(crate::cli::default_repo_path())
                    .and_then(|c| c.tracked())
                    .map_or(true, |t| t.is_empty()))
    }
}

/// What is installed for one tracked ref.
#[derive(Clone, Debug)]
struct Installed {
    target: Target,
    commit: Option<Checksum>,
    timestamp: Option<u64>,
}

/// Why a check or an update could not start.
enum Blocked {
    NothingTracked,
    ChosenSourceMissing,
    NoSources,
    Failed(String),
}

mod imp {
    use super::*;

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::FerryUpdater)]
    pub struct FerryUpdater {
        #[property(get, builder(Status::default()))]
        pub(super) status: Cell<Status>,
        #[property(get)]
        pub(super) title: RefCell<String>,
        #[property(get)]
        pub(super) description: RefCell<String>,
        /// The technical reason of an error, for those who want it.
        #[property(get)]
        pub(super) detail: RefCell<String>,
        #[property(get)]
        pub(super) icon_name: RefCell<String>,
        /// Looking for sources or checking them.
        #[property(get)]
        pub(super) busy: Cell<bool>,
        #[property(get)]
        pub(super) downloading: Cell<bool>,
        #[property(get)]
        pub(super) progress_fraction: Cell<f64>,
        /// "3.2 MB of 12.1 MB — About 5 seconds left".
        #[property(get)]
        pub(super) progress_text: RefCell<String>,
        #[property(get)]
        pub(super) can_update: Cell<bool>,
        #[property(get)]
        pub(super) can_cancel: Cell<bool>,
        /// An error is shown: looking again may help.
        #[property(get)]
        pub(super) can_retry: Cell<bool>,
        /// "automatic", or the id of the one source to use.
        #[property(get, set = Self::set_source_choice)]
        pub(super) source_choice: RefCell<String>,
        /// Use internet sources on metered connections.
        #[property(get, set = Self::set_use_metered)]
        pub(super) use_metered: Cell<bool>,
        /// Serve the local repository to nearby computers.
        #[property(get, set = Self::set_share_updates)]
        pub(super) share_updates: Cell<bool>,
        /// KiB/s; 0: no limit. Applies to what is shared with nearby computers.
        #[property(get, set = Self::set_bandwidth_limit)]
        pub(super) bandwidth_limit: Cell<u32>,
        /// Running on the demo world.
        #[property(get)]
        pub(super) demo: Cell<bool>,
        /// The local repository (empty until started).
        #[property(get)]
        pub(super) repo_path: RefCell<String>,
        /// The sources, as [`FerrySource`]s.
        #[property(get)]
        pub(super) sources: RefCell<Option<gio::ListStore>>,

        pub(super) discovery: RefCell<Option<Discovery>>,
        pub(super) world: RefCell<Option<DemoWorld>>,
        pub(super) engine: RefCell<Option<Rc<Engine>>>,
        pub(super) settled: Cell<bool>,
        pub(super) checking: Cell<bool>,
        pub(super) check_again: Cell<bool>,
        pub(super) check_timer: RefCell<Option<glib::SourceId>>,
        pub(super) plans: RefCell<Vec<RefPlan>>,
        pub(super) installed: RefCell<Vec<Installed>>,
        pub(super) pending_progress: RefCell<Option<(OverallProgress, Vec<SourceProgress>)>>,
        pub(super) progress_timer: RefCell<Option<glib::SourceId>>,
        pub(super) network: RefCell<Option<(gio::NetworkMonitor, glib::SignalHandlerId)>>,
        pub(super) sharing: RefCell<Option<Sharing>>,
        /// The interfaces discovery browses, which sharing also advertises on: one
        /// setting (`FERRY_LAN_INTERFACES`, `--no-lan`) for all mDNS traffic.
        pub(super) lan_interfaces: RefCell<Option<LanInterfaces>>,
        /// Shut down: work still in flight must not start anything new.
        pub(super) stopped: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryUpdater {
        const NAME: &'static str = "FerryUpdater";
        type Type = super::FerryUpdater;
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerryUpdater {
        fn constructed(&self) {
            self.parent_constructed();
            self.sources
                .replace(Some(gio::ListStore::new::<FerrySource>()));
            self.source_choice.replace(AUTOMATIC.to_owned());
            let obj = self.obj();
            let monitor = gio::NetworkMonitor::default();
            let handler = monitor.connect_network_metered_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.network_changed()
            ));
            self.network.replace(Some((monitor, handler)));
            obj.show_status(
                Status::Starting,
                &gettext("Looking for Updates"),
                &gettext("Looking for USB drives, nearby computers and servers with updates."),
            );
        }

        fn signals() -> &'static [glib::subclass::Signal] {
            static SIGNALS: OnceLock<Vec<glib::subclass::Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                // A message for a toast: something happened that needs no answer.
                vec![glib::subclass::Signal::builder("toast")
                    .param_types([String::static_type()])
                    .build()]
            })
        }

        fn dispose(&self) {
            self.obj().shutdown();
        }
    }

    impl FerryUpdater {
        fn set_source_choice(&self, choice: String) {
            let choice = if choice.is_empty() {
                AUTOMATIC.to_owned()
            } else {
                choice
            };
            if *self.source_choice.borrow() == choice {
                return;
            }
            self.source_choice.replace(choice);
            let obj = self.obj();
            obj.sync_selection();
            obj.refresh_freshness();
            obj.schedule_check();
        }

        fn set_use_metered(&self, value: bool) {
            if self.use_metered.replace(value) != value {
                self.obj().network_changed();
            }
        }

        fn set_share_updates(&self, value: bool) {
            if self.share_updates.replace(value) != value {
                self.obj().apply_sharing();
            }
        }

        fn set_bandwidth_limit(&self, value: u32) {
            if self.bandwidth_limit.replace(value) != value && self.share_updates.get() {
                // The server takes its cap when it starts.
                self.sharing.take();
                self.obj().apply_sharing();
            }
        }
    }
}

glib::wrapper! {
    pub struct FerryUpdater(ObjectSubclass<imp::FerryUpdater>);
}

impl Default for FerryUpdater {
    fn default() -> Self {
        glib::Object::new()
    }
}

/// Only the internet costs money on a metered connection.
fn is_metered_kind(source: &Source) -> bool {
    source.kind == SourceKind::Internet
}

/// A commit and when it was made.
#[derive(Clone, Debug, PartialEq)]
struct Known {
    commit: Checksum,
    timestamp: Option<u64>,
    version: Option<String>,
}

/// "Has version 42 — newer than yours" and the like: what `offer` is, compared with
/// what is installed and with the newest commit known anywhere.
fn freshness_words(
    offer: &crate::sources::OfferedRef,
    installed: Option<&Known>,
    newest: Option<&Known>,
) -> String {
    if installed.is_some_and(|i| i.commit == offer.commit) {
        return gettext("Has your version");
    }
    let newer = match (offer.timestamp, installed.and_then(|i| i.timestamp)) {
        (Some(offered), Some(mine)) => offered > mine,
        (None, Some(_)) => newest.is_some_and(|n| n.commit == offer.commit),
        (_, None) => true,
    };
    if !newer {
        return gettext("Has an older version");
    }
    let version = offer.version.clone().or_else(|| {
        newest
            .filter(|n| n.commit == offer.commit)
            .and_then(|n| n.version.clone())
    });
    let not_newest = newest.is_some_and(|n| {
        n.commit != offer.commit
            && matches!((n.timestamp, offer.timestamp), (Some(a), Some(b)) if a > b)
    });
    match (version, not_newest) {
        (Some(v), false) => {
            // Translators: {} is a version, e.g. “Has version 42 — newer than yours”.
            gettext("Has version {} — newer than yours").replace("{}", &v)
        }
        (Some(v), true) => {
            gettext("Has version {} — newer than yours, not the newest").replace("{}", &v)
        }
        (None, false) => gettext("Has a newer version"),
        (None, true) => gettext("Has a newer version, not the newest"),
    }
}

/// An engine error in plain words, and its technical reason.
fn explain(error: &EngineError) -> (String, String) {
    let plain = match error {
        EngineError::NoSource { .. } => gettext("No source has this update."),
        EngineError::OnlyUnverifiedNearby { .. } => gettext(
            "Only nearby sources have this update, and its origin does not sign updates, so they are not trusted. Choose one of them by hand to use it.",
        ),
        EngineError::NoTrustedCommit { .. } => gettext(
            "The update could not be verified: no source has a copy signed by a trusted key.",
        ),
        EngineError::ObjectUnavailable { .. } => {
            gettext("Part of the update is missing from every source.")
        }
        EngineError::AllSourcesFailed { .. } => {
            gettext("Every source stopped working during the download.")
        }
        EngineError::Cancelled => gettext("The update was cancelled."),
        EngineError::Local(RepoError::NoSpace { .. }) => {
            gettext("There is not enough free space on this computer’s disk for the update.")
        }
        EngineError::Local(_) => gettext("The update could not be saved on this computer."),
        EngineError::Trust(_) => gettext("The update could not be verified."),
    };
    (plain, error.to_string())
}

impl FerryUpdater {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store of [`FerrySource`]s.
    pub fn store(&self) -> gio::ListStore {
        self.sources().expect("made in constructed()")
    }

    fn items(&self) -> Vec<FerrySource> {
        let store = self.store();
        (0..store.n_items())
            .filter_map(|i| store.item(i).and_downcast::<FerrySource>())
            .collect()
    }

    fn item(&self, id: &str) -> Option<(u32, FerrySource)> {
        self.items()
            .into_iter()
            .enumerate()
            .find(|(_, item)| item.id() == id)
            .map(|(i, item)| (i as u32, item))
    }

    fn toast(&self, message: &str) {
        self.emit_by_name::<()>("toast", &[&message]);
    }

    fn set_string(&self, cell: &RefCell<String>, name: &str, value: &str) {
        if *cell.borrow() != value {
            cell.replace(value.to_owned());
            self.notify(name);
        }
    }

    fn set_flag(&self, cell: &Cell<bool>, name: &str, value: bool) {
        if cell.replace(value) != value {
            self.notify(name);
        }
    }

    fn show_status(&self, status: Status, title: &str, description: &str) {
        let imp = self.imp();
        let icon = match status {
            Status::Starting => "content-loading-symbolic",
            Status::UpToDate => "emblem-ok-symbolic",
            Status::Available => "software-update-available-symbolic",
            Status::NoSources => "drive-removable-media-symbolic",
            Status::Downloading => "folder-download-symbolic",
            Status::Ready => "emblem-ok-symbolic",
            Status::Error => "dialog-error-symbolic",
            Status::NothingTracked => "io.github.ferry_updates.Ferry-symbolic",
        };
        self.set_string(&imp.title, "title", title);
        self.set_string(&imp.description, "description", description);
        self.set_string(&imp.icon_name, "icon-name", icon);
        if status != Status::Error {
            self.set_string(&imp.detail, "detail", "");
        }
        if imp.status.replace(status) != status {
            self.notify("status");
        }
        self.set_flag(&imp.busy, "busy", status == Status::Starting);
        self.update_actions();
    }

    fn show_error(&self, title: &str, description: &str, detail: &str) {
        self.show_status(Status::Error, title, description);
        self.set_string(&self.imp().detail, "detail", detail);
    }

    fn update_actions(&self) {
        let imp = self.imp();
        let downloading = imp.downloading.get();
        let started = imp.discovery.borrow().is_some();
        let status = imp.status.get();
        let can_update = !downloading && status == Status::Available && started;
        self.set_flag(&imp.can_update, "can-update", can_update);
        self.set_flag(&imp.can_cancel, "can-cancel", downloading);
        let can_retry = !downloading && status == Status::Error && started;
        self.set_flag(&imp.can_retry, "can-retry", can_retry);
    }

    // ---- starting and stopping ---------------------------------------------------

    /// Starts discovery on the repository `launch` names (building the demo world
    /// first when it is wanted), then checks for updates.
    pub fn start(&self, launch: Launch) {
        let obj = self.clone();
        glib::MainContext::default().spawn_local(async move { obj.start_async(launch).await });
    }

    async fn start_async(&self, launch: Launch) {
        let imp = self.imp();
        let (repo, options) = if launch.wants_demo() {
            self.set_flag(&imp.demo, "demo", true);
            self.show_status(
                Status::Starting,
                &gettext("Preparing the Demonstration"),
                &gettext(
                    "Making an update server, a nearby computer and a USB stick to try Ferry with.",
                ),
            );
            match DemoWorld::create().await {
                // The window closed meanwhile: the world goes (and its directory).
                Ok(_) if imp.stopped.get() => return,
                Ok(world) => {
                    let mut note = Vec::new();
                    let _ = world.describe(&mut note);
                    glib::g_message!(LOG_DOMAIN, "{}", String::from_utf8_lossy(&note).trim());
                    let repo = world.repo().to_owned();
                    let options = world.discovery_options();
                    imp.world.replace(Some(world));
                    (repo, Ok(options))
                }
                Err(e) => {
                    return self.show_error(
                        &gettext("The Demonstration Could Not Be Prepared"),
                        &gettext("It needs the “ostree” and “gpg” programs and room in the temporary folder."),
                        &e.to_string(),
                    );
                }
            }
        } else {
            let repo = launch
                .repo
                .clone()
                .unwrap_or_else(crate::cli::default_repo_path);
            (repo, launch.discovery.options())
        };
        self.set_string(&imp.repo_path, "repo-path", &repo.display().to_string());
        let options: DiscoveryOptions = match options {
            Ok(options) => options,
            Err(e) => {
                return self.show_error(
                    &gettext("Ferry Could Not Start"),
                    &gettext("The settings for finding nearby computers are not valid."),
                    &e.to_string(),
                )
            }
        };
        imp.lan_interfaces.replace(Some(options.lan.clone()));
        let discovery = match Discovery::start(&repo, options) {
            Ok(discovery) => discovery,
            Err(e) => {
                return self.show_error(
                    &gettext("Ferry Could Not Start"),
                    &gettext("The update store on this computer could not be opened."),
                    &e.to_string(),
                )
            }
        };
        let events = discovery.subscribe();
        imp.discovery.replace(Some(discovery.clone()));
        self.apply_sharing();
        let weak = self.downgrade();
        glib::MainContext::default().spawn_local(async move {
            while let Ok(event) = events.recv().await {
                let Some(obj) = weak.upgrade() else { break };
                obj.source_event(event);
            }
        });
        discovery.settled().await;
        if imp.stopped.get() {
            return;
        }
        imp.settled.set(true);
        self.check_now().await;
    }

    /// Stops everything: downloads, discovery, sharing, the demo world.
    pub fn shutdown(&self) {
        let imp = self.imp();
        imp.stopped.set(true);
        if let Some(engine) = imp.engine.take() {
            engine.cancel();
        }
        if let Some(timer) = imp.check_timer.take() {
            timer.remove();
        }
        if let Some(timer) = imp.progress_timer.take() {
            timer.remove();
        }
        if let Some((monitor, handler)) = imp.network.take() {
            monitor.disconnect(handler);
        }
        imp.sharing.take();
        if let Some(discovery) = imp.discovery.take() {
            discovery.stop();
        }
        imp.world.take();
    }

    /// Looks again: rescans drives and fetches every source's summary.
    pub fn refresh(&self) {
        if let Some(discovery) = self.imp().discovery.borrow().as_ref() {
            discovery.refresh();
        }
        self.schedule_check();
    }

    // ---- sources -------------------------------------------------------------------

    fn source_event(&self, event: SourceEvent) {
        let store = self.store();
        match event {
            SourceEvent::Added { source } | SourceEvent::Changed { source } => {
                match self.item(&source.id) {
                    Some((_, item)) => item.set_source(&source),
                    None => {
                        let item = FerrySource::new(&source);
                        let mut all: Vec<Source> = self
                            .items()
                            .iter()
                            .filter_map(FerrySource::source)
                            .collect();
                        all.push(source.clone());
                        sort_sources(&mut all);
                        let position = all.iter().position(|s| s.id == source.id).unwrap_or(0);
                        store.insert(position as u32, &item);
                        item.set_selected(*self.imp().source_choice.borrow() == source.id);
                        item.connect_selected_notify(glib::clone!(
                            #[weak(rename_to = obj)]
                            self,
                            move |item| {
                                if item.selected() {
                                    obj.set_source_choice(item.id());
                                }
                            }
                        ));
                    }
                }
            }
            SourceEvent::Removed { source } => {
                if let Some((position, item)) = self.item(&source.id) {
                    store.remove(position);
                    if item.selected() {
                        self.toast(
                            &gettext("“{}” is gone: choose another source")
                                .replace("{}", &item.name()),
                        );
                    }
                }
            }
        }
        self.refresh_freshness();
        self.schedule_check();
    }

    /// Marks the chosen source's item as selected (and no other).
    fn sync_selection(&self) {
        let choice = self.imp().source_choice.borrow().clone();
        for item in self.items() {
            item.set_if_changed("selected", item.id() == choice);
        }
    }

    fn metered_excluded(&self, source: &Source) -> bool {
        is_metered_kind(source)
            && !self.imp().use_metered.get()
            && gio::NetworkMonitor::default().is_network_metered()
    }

    fn network_changed(&self) {
        self.refresh_freshness();
        self.schedule_check();
    }

    /// Updates every item's "what it has, how fresh" text.
    fn refresh_freshness(&self) {
        let imp = self.imp();
        let installed = imp.installed.borrow();
        let plans = imp.plans.borrow();
        for item in self.items() {
            let Some(source) = item.source() else {
                continue;
            };
            let text = match source.state {
                SourceState::Unreachable => gettext("Not reachable"),
                SourceState::NotServing => gettext("Not sharing updates"),
                SourceState::Failed => gettext("Could not be read"),
                SourceState::Discovered => gettext("Looking at what it has…"),
                SourceState::Ready | SourceState::Outdated if self.metered_excluded(&source) => {
                    gettext("Not used: the connection is metered")
                }
                SourceState::Ready | SourceState::Outdated
                    if self.not_trusted_for_any(&source, &installed) =>
                {
                    // Translators: a drive or nearby computer with an update whose
                    // origin signs nothing; choosing it by hand uses it anyway.
                    gettext(
                        "Not used: its updates are not signed, so only their own server is trusted",
                    )
                }
                SourceState::Ready | SourceState::Outdated => installed
                    .iter()
                    .find_map(|i| source.offer_for(&i.target).map(|offer| (i, offer.clone())))
                    .map(|(i, offer)| {
                        let newest = plans
                            .iter()
                            .find(|p| {
                                p.remote == i.target.remote.name && p.ref_name == i.target.ref_name
                            })
                            .map(|p| Known {
                                commit: p.commit,
                                timestamp: Some(p.timestamp),
                                version: p.version.clone(),
                            });
                        let mine = i.commit.map(|commit| Known {
                            commit,
                            timestamp: i.timestamp,
                            version: None,
                        });
                        freshness_words(&offer, mine.as_ref(), newest.as_ref())
                    })
                    .unwrap_or_else(|| gettext("Has nothing for this computer")),
            };
            item.set_if_changed("freshness", text);
        }
    }

    /// Whether `source` offers tracked refs, and may be used for none of them: their
    /// remotes verify no signatures and it is a discovered, not a chosen, source.
    fn not_trusted_for_any(&self, source: &Source, installed: &[Installed]) -> bool {
        let named = self.named_sources();
        let mut offered = installed
            .iter()
            .filter(|i| source.offer_for(&i.target).is_some())
            .peekable();
        offered.peek().is_some()
            && offered.all(|i| unused_reason(&i.target.remote, source, &named).is_some())
    }

    /// The source chosen by hand, if one is.
    fn named_sources(&self) -> Vec<String> {
        let choice = self.imp().source_choice.borrow().clone();
        if choice == AUTOMATIC {
            Vec::new()
        } else {
            vec![choice]
        }
    }

    /// Reads the tracked refs and what is installed for them.
    fn load_installed(&self) -> Result<Vec<Target>, Blocked> {
        let path = PathBuf::from(self.repo_path());
        let config = RepoConfig::load(&path).map_err(|e| Blocked::Failed(e.to_string()))?;
        let targets = Target::tracked(&config).map_err(|e| Blocked::Failed(e.to_string()))?;
        if targets.is_empty() {
            return Err(Blocked::NothingTracked);
        }
        let repo = Repo::open(&path).map_err(|e| Blocked::Failed(e.to_string()))?;
        let installed = targets
            .iter()
            .map(|target| {
                let installed = repo
                    .installed(&target.remote.name, &target.ref_name)
                    .ok()
                    .flatten();
                Installed {
                    target: target.clone(),
                    commit: installed.as_ref().map(|(checksum, _)| *checksum),
                    timestamp: installed.map(|(_, commit)| commit.timestamp),
                }
            })
            .collect();
        self.imp().installed.replace(installed);
        Ok(targets)
    }

    /// The sources to give the engine: the chosen one, or every one allowed.
    fn engine_sources(&self) -> Result<Vec<Source>, Blocked> {
        let discovery = self.imp().discovery.borrow().clone();
        let Some(discovery) = discovery else {
            return Err(Blocked::NoSources);
        };
        let choice = self.imp().source_choice.borrow().clone();
        let allowed = discovery
            .sources()
            .into_iter()
            .filter(|s| !self.metered_excluded(s));
        if choice == AUTOMATIC {
            let sources: Vec<Source> = allowed.collect();
            if sources.is_empty() {
                return Err(Blocked::NoSources);
            }
            Ok(sources)
        } else {
            let chosen: Vec<Source> = allowed.filter(|s| s.id == choice).collect();
            if chosen.is_empty() {
                return Err(Blocked::ChosenSourceMissing);
            }
            Ok(chosen)
        }
    }

    fn new_engine(&self) -> Result<(Rc<Engine>, async_channel::Receiver<EngineEvent>), Blocked> {
        let repo =
            Repo::open(Path::new(&self.repo_path())).map_err(|e| Blocked::Failed(e.to_string()))?;
        let (sender, receiver) = async_channel::unbounded();
        let settings = EngineSettings {
            named_sources: self.named_sources(),
            ..EngineSettings::default()
        };
        Ok((Rc::new(Engine::new(repo, settings, sender)), receiver))
    }

    fn show_blocked(&self, blocked: Blocked) {
        match blocked {
            Blocked::NothingTracked => self.show_status(
                Status::NothingTracked,
                &gettext("Nothing to Update"),
                &gettext("This computer does not keep anything up to date with Ferry yet."),
            ),
            Blocked::ChosenSourceMissing => self.show_error(
                &gettext("The Chosen Source Is Not Here"),
                &gettext("Choose another source, or “Automatic” to use every source."),
                "",
            ),
            Blocked::NoSources => self.show_status(
                Status::NoSources,
                &gettext("No Updates Found"),
                &gettext("Insert a USB stick with updates, or connect to a network with a computer or server that has them."),
            ),
            Blocked::Failed(detail) => self.show_error(
                &gettext("Something Went Wrong"),
                &gettext("The update store on this computer could not be read."),
                &detail,
            ),
        }
    }

    // ---- checking ------------------------------------------------------------------

    /// Checks again soon, once source changes have settled.
    fn schedule_check(&self) {
        let imp = self.imp();
        if !imp.settled.get() || imp.stopped.get() {
            return;
        }
        if let Some(timer) = imp.check_timer.take() {
            timer.remove();
        }
        let obj = self.downgrade();
        let timer = glib::timeout_add_local_once(CHECK_DELAY, move || {
            if let Some(obj) = obj.upgrade() {
                obj.imp().check_timer.take();
                glib::MainContext::default().spawn_local(async move { obj.check_now().await });
            }
        });
        imp.check_timer.replace(Some(timer));
    }

    /// Resolves the newest commit of every tracked ref across the sources.
    async fn check_now(&self) {
        let imp = self.imp();
        if imp.downloading.get() {
            return; // the update checks when it ends
        }
        if imp.checking.replace(true) {
            imp.check_again.set(true);
            return;
        }
        loop {
            imp.check_again.set(false);
            let outcome = self.run_check().await;
            if imp.downloading.get() {
                break;
            }
            match outcome {
                Ok(Ok(plans)) => self.show_plans(plans),
                Ok(Err(EngineError::NoSource { .. })) => self.show_blocked(Blocked::NoSources),
                Ok(Err(error)) => {
                    let (plain, detail) = explain(&error);
                    self.show_error(&gettext("Updates Could Not Be Checked"), &plain, &detail);
                }
                Err(blocked) => self.show_blocked(blocked),
            }
            self.refresh_freshness();
            if !imp.check_again.get() {
                break;
            }
        }
        imp.checking.set(false);
    }

    async fn run_check(&self) -> Result<Result<Vec<RefPlan>, EngineError>, Blocked> {
        let targets = self.load_installed()?;
        let sources = self.engine_sources()?;
        let (engine, _events) = self.new_engine()?;
        Ok(engine.check(&targets, &sources).await)
    }

    fn show_plans(&self, plans: Vec<RefPlan>) {
        let imp = self.imp();
        let pending: Vec<&RefPlan> = plans.iter().filter(|p| !p.up_to_date).collect();
        match pending.as_slice() {
            [] if imp.status.get() == Status::Ready => {}
            [] => {
                let description = match plans.first().and_then(|p| p.version.clone()) {
                    Some(version) if plans.len() == 1 => {
                        gettext("Version {} is the newest.").replace("{}", &version)
                    }
                    _ => gettext("This computer has the newest updates."),
                };
                self.show_status(Status::UpToDate, &gettext("Up to Date"), &description);
            }
            [plan] => {
                let description = match &plan.version {
                    // Translators: “Version 42, from 24 November 2026”.
                    Some(version) => gettext("Version {version}, from {date}")
                        .replace("{version}", version)
                        .replace("{date}", &format::date(plan.timestamp)),
                    None => gettext("A new version from {date}")
                        .replace("{date}", &format::date(plan.timestamp)),
                } + &download_line(&pending);
                self.show_status(
                    Status::Available,
                    &gettext("Update Available"),
                    &description,
                );
            }
            many => {
                let n = u32::try_from(many.len()).unwrap_or(u32::MAX);
                let description =
                    ngettext("{} update is available.", "{} updates are available.", n)
                        .replace("{}", &n.to_string())
                        + &download_line(many);
                self.show_status(
                    Status::Available,
                    &gettext("Updates Available"),
                    &description,
                );
            }
        }
        imp.plans.replace(plans);
    }

    // ---- updating ------------------------------------------------------------------

    /// Downloads the update from the chosen sources.
    pub fn update(&self) {
        if !self.can_update() {
            return;
        }
        let obj = self.clone();
        glib::MainContext::default().spawn_local(async move { obj.update_async().await });
    }

    /// Stops the download; what is stored stays, the next update resumes it.
    pub fn cancel(&self) {
        if let Some(engine) = self.imp().engine.borrow().as_ref() {
            engine.cancel();
        }
    }

    async fn update_async(&self) {
        let imp = self.imp();
        let prepared = self
            .load_installed()
            .and_then(|targets| Ok((targets, self.engine_sources()?)))
            .and_then(|(targets, sources)| Ok((targets, sources, self.new_engine()?)));
        let (targets, sources, (engine, events)) = match prepared {
            Ok(prepared) => prepared,
            Err(blocked) => return self.show_blocked(blocked),
        };
        let version = imp
            .plans
            .borrow()
            .iter()
            .find(|p| !p.up_to_date)
            .and_then(|p| p.version.clone());
        let description = match &version {
            Some(v) => gettext("Version {}").replace("{}", v),
            None => String::new(),
        };
        self.set_flag(&imp.downloading, "downloading", true);
        self.show_status(
            Status::Downloading,
            &gettext("Downloading Update"),
            &description,
        );
        self.set_progress(0.0, &gettext("Starting…"));
        let used: Vec<&str> = sources
            .iter()
            .filter(|s| s.state.is_usable())
            .map(|s| s.id.as_str())
            .collect();
        for item in self.items() {
            let active = used.contains(&item.id().as_str());
            item.set_if_changed("downloading", active);
            item.set_if_changed("progress-fraction", 0.0);
            item.set_if_changed("bytes", 0u64);
            item.set_if_changed("rate", 0u64);
            item.set_if_changed("progress-text", String::new());
        }
        imp.engine.replace(Some(engine.clone()));

        let weak = self.downgrade();
        let listener = glib::MainContext::default().spawn_local(async move {
            while let Ok(event) = events.recv().await {
                let Some(obj) = weak.upgrade() else { break };
                obj.engine_event(event);
            }
        });
        let weak = self.downgrade();
        let timer = glib::timeout_add_local(PROGRESS_INTERVAL, move || match weak.upgrade() {
            Some(obj) => {
                obj.apply_progress();
                glib::ControlFlow::Continue
            }
            None => glib::ControlFlow::Break,
        });
        imp.progress_timer.replace(Some(timer));

        let result = engine.update(&targets, &sources).await;

        imp.engine.take();
        drop(engine); // closes the event channel: the listener ends
        let _ = listener.await;
        if let Some(timer) = imp.progress_timer.take() {
            timer.remove();
        }
        self.apply_progress();
        for item in self.items() {
            item.set_if_changed("downloading", false);
        }
        self.set_flag(&imp.downloading, "downloading", false);
        let _ = self.load_installed();
        // One ref that failed does not hide the others that were updated.
        let result = result.map(|outcomes| {
            let mut plans = Vec::new();
            let mut failed = Vec::new();
            for outcome in outcomes {
                match outcome.result {
                    Ok(plan) => plans.push(plan),
                    Err(e) => failed.push((outcome.remote, outcome.ref_name, e)),
                }
            }
            (plans, failed)
        });
        match result {
            Ok((plans, failed)) if !failed.is_empty() => {
                let pulled = u32::try_from(plans.iter().filter(|p| !p.up_to_date).count())
                    .unwrap_or(u32::MAX);
                let (mut plain, _) = explain(&failed[0].2);
                if pulled > 0 {
                    plain = ngettext(
                        "{} other update is downloaded and verified.",
                        "{} other updates are downloaded and verified.",
                        pulled,
                    )
                    .replace("{}", &pulled.to_string())
                        + " "
                        + &plain;
                }
                let detail = failed
                    .iter()
                    .map(|(remote, ref_name, e)| format!("{remote}:{ref_name}: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                imp.plans.replace(plans);
                let title = if pulled > 0 {
                    gettext("Some Updates Failed")
                } else {
                    gettext("The Update Failed")
                };
                self.show_error(&title, &plain, &detail);
            }
            Ok((plans, _)) => {
                let pulled = plans.iter().any(|p| !p.up_to_date);
                imp.plans.replace(plans);
                if pulled {
                    let description = match &version {
                        Some(v) => {
                            gettext("Version {} is downloaded and verified.").replace("{}", v)
                        }
                        None => gettext("The update is downloaded and verified."),
                    };
                    self.show_status(Status::Ready, &gettext("Update Ready"), &description);
                } else {
                    self.show_status(
                        Status::UpToDate,
                        &gettext("Up to Date"),
                        &gettext("This computer has the newest updates."),
                    );
                }
            }
            Err(EngineError::Cancelled) => {
                self.toast(&gettext("Update cancelled"));
                self.show_status(
                    Status::Available,
                    &gettext("Update Available"),
                    &description,
                );
                self.schedule_check();
            }
            Err(error) => {
                let (plain, detail) = explain(&error);
                self.show_error(&gettext("The Update Failed"), &plain, &detail);
            }
        }
        self.refresh_freshness();
    }

    fn engine_event(&self, event: EngineEvent) {
        match event {
            EngineEvent::Progress {
                overall, sources, ..
            } => {
                self.imp()
                    .pending_progress
                    .replace(Some((overall, sources)));
            }
            EngineEvent::SourceDropped { source, reason } => {
                glib::g_message!(LOG_DOMAIN, "stopped using {}: {reason}", source.id);
                let name = self
                    .item(&source.id)
                    .map(|(_, item)| item.name().to_string())
                    .unwrap_or(source.name);
                self.toast(&gettext("Stopped using “{}”").replace("{}", &name));
            }
            EngineEvent::Resolved { .. }
            | EngineEvent::RefUpdated { .. }
            | EngineEvent::RefResult { .. }
            | EngineEvent::ObjectFetched { .. } => {}
        }
    }

    fn set_progress(&self, fraction: f64, text: &str) {
        let imp = self.imp();
        if (imp.progress_fraction.get() - fraction).abs() > f64::EPSILON {
            imp.progress_fraction.set(fraction);
            self.notify("progress-fraction");
        }
        self.set_string(&imp.progress_text, "progress-text", text);
    }

    /// Shows the newest progress report, if one came since the last.
    fn apply_progress(&self) {
        let Some((overall, sources)) = self.imp().pending_progress.take() else {
            return;
        };
        let total = overall.bytes_total.max(overall.bytes_done);
        let fraction = if total == 0 {
            0.0
        } else {
            overall.bytes_done as f64 / total as f64
        };
        let mut text = format::size_of(overall.bytes_done, total);
        if let Some(eta) = overall.eta_seconds {
            text = format!("{text} — {}", format::time_left(eta));
        }
        self.set_progress(fraction.clamp(0.0, 1.0), &text);
        for progress in sources {
            let Some((_, item)) = self.item(&progress.source.id) else {
                continue;
            };
            let share = if total == 0 {
                0.0
            } else {
                (progress.bytes as f64 / total as f64).clamp(0.0, 1.0)
            };
            item.set_if_changed("progress-fraction", share);
            item.set_if_changed("bytes", progress.bytes);
            item.set_if_changed("rate", progress.rate);
            let text = if progress.state == TransferState::Dropped {
                gettext("Stopped")
            } else if progress.bytes == 0 && progress.in_flight == 0 {
                // Better sources have had everything so far.
                gettext("Not needed so far")
            } else {
                // Translators: what one source gave so far and how fast: “1.2 MB · 300 kB/s”.
                gettext("{bytes} · {rate}")
                    .replace("{bytes}", &format::size(progress.bytes))
                    .replace("{rate}", &format::rate(progress.rate))
            };
            item.set_if_changed("progress-text", text);
        }
    }

    // ---- sharing -------------------------------------------------------------------

    fn apply_sharing(&self) {
        let imp = self.imp();
        let wanted = imp.share_updates.get() && imp.discovery.borrow().is_some();
        if !wanted {
            imp.sharing.take();
            return;
        }
        if imp.sharing.borrow().is_some() {
            return;
        }
        let limit = u64::from(imp.bandwidth_limit.get()) * 1024;
        let interfaces = imp
            .lan_interfaces
            .borrow()
            .clone()
            .unwrap_or(LanInterfaces::Off);
        match start_sharing(
            Path::new(&self.repo_path()),
            (limit > 0).then_some(limit),
            imp.demo.get(),
            interfaces,
        ) {
            Ok(sharing) => {
                imp.sharing.replace(Some(sharing));
            }
            Err(e) => {
                glib::g_warning!(LOG_DOMAIN, "cannot share updates: {e}");
                self.toast(&gettext("Updates cannot be shared: {}").replace("{}", &e.to_string()));
            }
        }
    }
}

/// Serves `repo` on Ferry's port, sending at most `bandwidth_limit` bytes per
/// second, on the addresses of `interfaces` (the ones discovery uses; loopback
/// only when they are off), and advertises it there.
/// `loopback_only` (the demonstration) serves on 127.0.0.1 and advertises nothing.
fn start_sharing(
    repo: &Path,
    bandwidth_limit: Option<u64>,
    loopback_only: bool,
    interfaces: LanInterfaces,
) -> Result<Sharing, ShareError> {
    let interfaces = if loopback_only {
        LanInterfaces::Off
    } else {
        interfaces
    };
    let mut config = ServerConfig::new(repo);
    config.bandwidth_limit = bandwidth_limit;
    // Served where it is advertised (loopback only when the LAN is off).
    config.listen = if loopback_only {
        Listen::Addresses(vec![std::net::Ipv4Addr::LOCALHOST.into()])
    } else {
        Listen::Interfaces(interfaces.clone())
    };
    let sharing = Sharing::start(config, &interfaces)?;
    sharing.connect_summary_changed(|_, advert_error| {
        if let Some(e) = advert_error {
            glib::g_warning!(LOG_DOMAIN, "cannot update the advertisement: {e}");
        }
    });
    glib::g_message!(
        LOG_DOMAIN,
        "sharing {} at {}",
        repo.display(),
        sharing.urls().join(", ")
    );
    Ok(sharing)
}

/// “\n12.3 MB to download” when every pending plan knows its size, else nothing.
fn download_line(pending: &[&RefPlan]) -> String {
    let total: Option<u64> = pending.iter().map(|p| p.download.map(|d| d.bytes)).sum();
    let Some(total) = total else {
        return String::new();
    };
    // Translators: {} is a size such as “12.3 MB”.
    let line = gettext("{} to download");
    format!("\n{}", line.replace("{}", &glib::format_size(total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::OfferedRef;

    fn known(seed: &[u8], timestamp: u64, version: &str) -> Known {
        Known {
            commit: Checksum::digest(seed),
            timestamp: Some(timestamp),
            version: Some(version.to_owned()),
        }
    }

    fn offer(k: &Known) -> OfferedRef {
        OfferedRef {
            collection_id: Some("org.example.Os".into()),
            ref_name: "os/stable".into(),
            commit: k.commit,
            timestamp: k.timestamp,
            version: k.version.clone(),
        }
    }

    #[test]
    fn freshness_compares_with_installed_and_newest() {
        let v40 = known(b"40", 100, "40");
        let v41 = known(b"41", 200, "41");
        let v42 = known(b"42", 300, "42");
        let words = |o: &Known, mine: Option<&Known>| freshness_words(&offer(o), mine, Some(&v42));
        assert_eq!(words(&v42, Some(&v40)), "Has version 42 — newer than yours");
        assert_eq!(
            words(&v41, Some(&v40)),
            "Has version 41 — newer than yours, not the newest"
        );
        assert_eq!(words(&v40, Some(&v40)), "Has your version");
        assert_eq!(words(&v40, Some(&v41)), "Has an older version");
        // Nothing installed yet: anything is newer.
        assert_eq!(words(&v42, None), "Has version 42 — newer than yours");
        // Without a version, the newest known commit lends its own.
        let mut bare = offer(&v42);
        bare.version = None;
        assert_eq!(
            freshness_words(&bare, Some(&v40), Some(&v42)),
            "Has version 42 — newer than yours"
        );
        bare.commit = Checksum::digest(b"other");
        assert_eq!(
            freshness_words(&bare, Some(&v40), Some(&v42)),
            "Has a newer version"
        );
    }

    #[test]
    fn engine_errors_in_plain_words() {
        let (plain, detail) = explain(&EngineError::NoTrustedCommit {
            ref_name: "os/stable".into(),
            reasons: "abc from x: no signature".into(),
        });
        assert!(
            plain.starts_with("The update could not be verified"),
            "{plain}"
        );
        assert!(detail.contains("no signature"), "{detail}");
        let (plain, _) = explain(&EngineError::Cancelled);
        assert_eq!(plain, "The update was cancelled.");
        let (plain, detail) = explain(&EngineError::Local(RepoError::NoSpace {
            path: "/home/user/.local/share/ferry/repo/tmp".into(),
        }));
        assert!(plain.contains("not enough free space"), "{plain}");
        assert!(detail.contains("/home/user"), "{detail}");
    }
}
