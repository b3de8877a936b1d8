//! `FerryUpdater`: the window's model. It drives the engine as `ferryctl update`
//! does — discovery, then `Engine::check` and `Engine::update` — and turns what
//! happens into GObject properties: the status (up to date, available, downloading,
//! ready, error …) and a `gio::ListStore` of [`FerrySource`]s.
//!
//! By concern, as impl blocks of one type:
//! - here: the object, its properties, status, starting and stopping;
//! - `sources`: the sources list, the source choice, metered connections;
//! - `checking`: what is installed and what the sources offer for it;
//! - `downloading`: the update, with progress sampled by a [`FerryProgress`];
//! - `sharing`: serving the repository to nearby computers;
//! - `text`: the words shown, as pure functions.

mod checking;
mod downloading;
mod sharing;
mod sources;
pub mod text;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::OnceLock;

use gettextrs::gettext;
use gtk4::{gio, glib, prelude::*, subclass::prelude::*};

use crate::demo::DemoWorld;
use crate::fetch::engine::{DownloadLimit, Engine, RefPlan};
use crate::objects::{FerryProgress, FerrySource};
use crate::repo::config::RepoConfig;
use crate::share::Sharing;
use crate::sources::{Discovery, DiscoveryOptions, DiscoverySwitches, LanInterfaces, LOG_DOMAIN};

use checking::Installed;

/// The source choice that uses every source.
pub const AUTOMATIC: &str = "automatic";

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
    pub discovery: DiscoverySwitches,
}

impl Launch {
    /// Whether Ferry should show the demo: asked for, or nothing given and the
    /// default repository tracks nothing.
    pub fn wants_demo(&self) -> bool {
        self.demo
            || (self.repo.is_none()
                && RepoConfig::load(crate::repo::default_repo_path())
                    .and_then(|c| c.tracked())
                    .map_or(true, |t| t.is_empty()))
    }
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
        /// Bytes/s the engine downloads at most; 0: no limit.
        #[property(get, set)]
        pub(super) download_rate_limit: Cell<u32>,
        /// The download limit applies to internet sources only.
        #[property(get, set)]
        pub(super) download_rate_limit_internet_only: Cell<bool>,
        /// Look for updates on drives (privacy: off, no drive is looked at).
        #[property(get, set = Self::set_look_on_drives, default = true)]
        pub(super) look_on_drives: Cell<bool>,
        /// Look for updates on the local network (off: no mDNS browsing).
        #[property(get, set = Self::set_look_on_lan, default = true)]
        pub(super) look_on_lan: Cell<bool>,
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
        /// The repository and discovery options before the privacy switches narrow
        /// them: discovery starts again from these when a switch changes.
        pub(super) discovery_base: RefCell<Option<(PathBuf, DiscoveryOptions)>>,
        pub(super) world: RefCell<Option<DemoWorld>>,
        pub(super) engine: RefCell<Option<Rc<Engine>>>,
        pub(super) settled: Cell<bool>,
        pub(super) checking: Cell<bool>,
        pub(super) check_again: Cell<bool>,
        pub(super) check_timer: RefCell<Option<glib::SourceId>>,
        pub(super) plans: RefCell<Vec<RefPlan>>,
        pub(super) installed: RefCell<Vec<Installed>>,
        /// The download's progress, sampled.
        pub(super) progress: FerryProgress,
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
            self.look_on_drives.set(true);
            self.look_on_lan.set(true);
            let obj = self.obj();
            let monitor = gio::NetworkMonitor::default();
            let handler = monitor.connect_network_metered_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.network_changed()
            ));
            self.network.replace(Some((monitor, handler)));
            self.progress.connect_sampled(glib::clone!(
                #[weak]
                obj,
                move |progress| obj.show_progress(&progress.sample())
            ));
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
                if let Some(discovery) = self.discovery.borrow().as_ref() {
                    discovery.set_allow_metered(value);
                }
                self.obj().network_changed();
            }
        }

        fn set_look_on_drives(&self, value: bool) {
            if self.look_on_drives.replace(value) != value {
                self.obj().restart_discovery();
            }
        }

        fn set_look_on_lan(&self, value: bool) {
            if self.look_on_lan.replace(value) != value {
                self.obj().restart_discovery();
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

impl FerryUpdater {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store of [`FerrySource`]s.
    pub fn store(&self) -> gio::ListStore {
        self.sources().expect("made in constructed()")
    }

    pub(super) fn items(&self) -> Vec<FerrySource> {
        let store = self.store();
        (0..store.n_items())
            .filter_map(|i| store.item(i).and_downcast::<FerrySource>())
            .collect()
    }

    pub(super) fn item(&self, id: &str) -> Option<(u32, FerrySource)> {
        self.items()
            .into_iter()
            .enumerate()
            .find(|(_, item)| item.id() == id)
            .map(|(i, item)| (i as u32, item))
    }

    pub(super) fn toast(&self, message: &str) {
        self.emit_by_name::<()>("toast", &[&message]);
    }

    pub(super) fn set_string(&self, cell: &RefCell<String>, name: &str, value: &str) {
        if *cell.borrow() != value {
            cell.replace(value.to_owned());
            self.notify(name);
        }
    }

    pub(super) fn set_flag(&self, cell: &Cell<bool>, name: &str, value: bool) {
        if cell.replace(value) != value {
            self.notify(name);
        }
    }

    pub(super) fn show_status(&self, status: Status, title: &str, description: &str) {
        let imp = self.imp();
        let icon = status_icon(status);
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

    pub(super) fn show_error(&self, title: &str, description: &str, detail: &str) {
        self.show_status(Status::Error, title, description);
        self.set_string(&self.imp().detail, "detail", detail);
    }

    pub(super) fn update_actions(&self) {
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
                .unwrap_or_else(crate::repo::default_repo_path);
            (repo, launch.discovery.options())
        };
        self.set_string(&imp.repo_path, "repo-path", &repo.display().to_string());
        let mut options: DiscoveryOptions = match options {
            Ok(options) => options,
            Err(e) => {
                return self.show_error(
                    &gettext("Ferry Could Not Start"),
                    &gettext("The settings for finding nearby computers are not valid."),
                    &e.to_string(),
                )
            }
        };
        // Sharing follows the interfaces given, whatever the privacy switches say
        // about looking for updates: it has its own switch.
        imp.lan_interfaces.replace(Some(options.lan.clone()));
        options.allow_metered = imp.use_metered.get();
        imp.discovery_base
            .replace(Some((repo.clone(), options.clone())));
        self.start_discovery(&repo, options).await;
    }

    /// What the privacy switches turn off.
    fn privacy_switches(&self) -> DiscoverySwitches {
        DiscoverySwitches {
            no_lan: !self.look_on_lan(),
            no_mounts: !self.look_on_drives(),
            ..DiscoverySwitches::default()
        }
    }

    /// Starts discovery with `options` narrowed by the privacy switches, then
    /// checks for updates once it settled.
    async fn start_discovery(&self, repo: &std::path::Path, mut options: DiscoveryOptions) {
        let imp = self.imp();
        self.privacy_switches().narrow(&mut options);
        if !self.look_on_drives() {
            // Sideload directories stand for drives (the demo's USB stick is one).
            options.sideload_dirs.clear();
        }
        let discovery = match Discovery::start(repo, options) {
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

    /// Starts discovery again (a privacy switch changed): the sources it no longer
    /// looks at go from the list. An update running meanwhile keeps the sources it
    /// was given.
    pub(super) fn restart_discovery(&self) {
        let imp = self.imp();
        let Some((repo, options)) = imp.discovery_base.borrow().clone() else {
            // Not started yet: the switches apply when it starts.
            return;
        };
        if imp.stopped.get() {
            return;
        }
        if let Some(discovery) = imp.discovery.take() {
            discovery.stop();
        }
        self.store().remove_all();
        imp.plans.borrow_mut().clear();
        imp.settled.set(false);
        let obj = self.clone();
        glib::MainContext::default()
            .spawn_local(async move { obj.start_discovery(&repo, options).await });
    }

    /// The engine's download limit, from the preferences.
    pub(super) fn engine_download_limit(&self) -> DownloadLimit {
        DownloadLimit {
            bytes_per_second: u64::from(self.download_rate_limit()),
            internet_only: self.download_rate_limit_internet_only(),
        }
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
}

/// The icon of the status area.
fn status_icon(status: Status) -> &'static str {
    match status {
        Status::Starting => "content-loading-symbolic",
        Status::UpToDate => "emblem-ok-symbolic",
        Status::Available => "software-update-available-symbolic",
        Status::NoSources => "drive-removable-media-symbolic",
        Status::Downloading => "folder-download-symbolic",
        Status::Ready => "emblem-ok-symbolic",
        Status::Error => "dialog-error-symbolic",
        Status::NothingTracked => "io.github.ferry_updates.Ferry-symbolic",
    }
}
