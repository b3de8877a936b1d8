//! Serving and advertising together: the repository served over HTTP
//! ([`super::server`]) and announced over DNS-SD ([`super::advertise`]) on the
//! interfaces a [`LanInterfaces`] allows, the advertisement following the served
//! summary. `ferryctl serve` and the app's "Share updates with nearby computers"
//! both run one [`Sharing`], so they start, re-advertise and stop the same way.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::advertise::{advert_for, AdvertSettings, Advertiser};
use super::server::{RepoServer, ServedSummary, ServerConfig};
use super::ShareError;
use crate::sources::lan::txt::RepoAdvert;
use crate::sources::LanInterfaces;

/// Called when the served summary changed, after the advertisement was updated;
/// the error is why the advertisement could not follow.
type SummaryChangedListener = Box<dyn Fn(&ServedSummary, Option<&ShareError>)>;

/// A running server and, unless the LAN interfaces are off, its advertisement.
/// Lives on the thread-default main context; stops everything when dropped.
pub struct Sharing {
    server: RepoServer,
    // Shared with the server's summary listener, which holds them weakly.
    advertiser: Rc<RefCell<Option<Advertiser>>>,
    listeners: Rc<RefCell<Vec<SummaryChangedListener>>>,
}

fn advert_of(summary: &ServedSummary, repo_index: u16) -> RepoAdvert {
    advert_for(summary.collection_refs(), summary.last_modified, repo_index)
}

impl Sharing {
    /// Starts serving as `config` says, then advertises the repository on
    /// `interfaces` (nothing is advertised, and no mDNS daemon started, when they
    /// are [`LanInterfaces::Off`]). The advertisement names the address served on
    /// when `config.listen` gives exactly one address.
    pub fn start(config: ServerConfig, interfaces: &LanInterfaces) -> Result<Self, ShareError> {
        let address = config.listen.single_address();
        let server = RepoServer::start(config)?;
        let repo_index = server.repo_index();
        let settings = AdvertSettings::new(server.port(), repo_index, address);
        let advert = advert_of(&server.summary(), repo_index);
        // On error the server is dropped, which stops it.
        let advertiser = Rc::new(RefCell::new(Advertiser::start(
            interfaces, settings, &advert,
        )?));
        let listeners: Rc<RefCell<Vec<SummaryChangedListener>>> = Rc::default();
        let weak_advertiser: Weak<RefCell<Option<Advertiser>>> = Rc::downgrade(&advertiser);
        let weak_listeners = Rc::downgrade(&listeners);
        server.connect_summary_changed(move |summary| {
            let advert_error = weak_advertiser.upgrade().and_then(|advertiser| {
                let advertiser = advertiser.borrow();
                advertiser
                    .as_ref()
                    .and_then(|a| a.update(&advert_of(summary, repo_index)).err())
            });
            if let Some(listeners) = weak_listeners.upgrade() {
                for listener in listeners.borrow().iter() {
                    listener(summary, advert_error.as_ref());
                }
            }
        });
        Ok(Self {
            server,
            advertiser,
            listeners,
        })
    }

    /// The server, for its port, URLs, summary and statistics.
    pub fn server(&self) -> &RepoServer {
        &self.server
    }

    /// The TCP port served.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// URLs of the repository (`http://ADDRESS:PORT/RI/`).
    pub fn urls(&self) -> Vec<String> {
        self.server.urls()
    }

    /// The advertisement's full DNS-SD name and its settings, if advertised.
    pub fn advertisement(&self) -> Option<(String, AdvertSettings)> {
        self.advertiser
            .borrow()
            .as_ref()
            .map(|a| (a.fullname().to_owned(), a.settings().clone()))
    }

    /// Calls `f` (on the main context) whenever the served summary changes, after
    /// the advertisement has been updated to match; `f` gets the error if it could
    /// not be.
    pub fn connect_summary_changed(
        &self,
        f: impl Fn(&ServedSummary, Option<&ShareError>) + 'static,
    ) {
        self.listeners.borrow_mut().push(Box::new(f));
    }

    /// Withdraws the advertisement (mDNS goodbye packets), then stops serving.
    /// `Ok(true)` when an advertisement was withdrawn, `Ok(false)` when there was
    /// none; the server is stopped either way.
    pub fn stop(self) -> Result<bool, ShareError> {
        let withdrawn = self.advertiser.take().map(Advertiser::withdraw);
        self.server.stop();
        withdrawn.transpose().map(|w| w.is_some())
    }
}

impl Drop for Sharing {
    fn drop(&mut self) {
        // Peers forget the advertisement before the server goes away (the
        // advertiser's drop withdraws it); both steps do nothing after `stop`.
        drop(self.advertiser.take());
        self.server.stop();
    }
}
