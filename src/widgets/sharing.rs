//! "Share updates with nearby computers": the local repository served over HTTP
//! ([`crate::share::server`]) and advertised over DNS-SD on the interfaces
//! `FERRY_LAN_INTERFACES` allows ([`crate::share::advertise`]), as `ferryctl serve
//! --advertise` does. Stops when dropped.

use std::path::Path;
use std::rc::Rc;

use gtk4::glib;

use crate::share::advertise::{advert_for, AdvertSettings, Advertiser};
use crate::share::server::{RepoServer, ServerConfig};
use crate::share::ShareError;
use crate::sources::{LanInterfaces, LOG_DOMAIN};

pub struct Sharing {
    server: RepoServer,
    // Dropped after the server stops: its drop withdraws the advertisement.
    _advertiser: Rc<Option<Advertiser>>,
}

impl Sharing {
    /// Serves `repo` on Ferry's port, sending at most `bandwidth_limit` bytes per
    /// second, and advertises it. `loopback_only` (the demonstration) serves on
    /// 127.0.0.1 and advertises nothing.
    pub fn start(
        repo: &Path,
        bandwidth_limit: Option<u64>,
        loopback_only: bool,
    ) -> Result<Self, ShareError> {
        let interfaces = if loopback_only {
            LanInterfaces::Off
        } else {
            LanInterfaces::from_env().unwrap_or_else(|e| {
                glib::g_warning!(LOG_DOMAIN, "not advertising: {e}");
                LanInterfaces::Off
            })
        };
        let mut config = ServerConfig::new(repo);
        config.bandwidth_limit = bandwidth_limit;
        if loopback_only {
            config.address = Some(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let server = RepoServer::start(config)?;
        let index = server.repo_index();
        let summary = server.summary();
        let advert = advert_for(summary.collection_refs(), summary.last_modified, index);
        let settings = AdvertSettings::new(server.port(), index, None);
        let advertiser = Rc::new(Advertiser::start(&interfaces, settings, &advert)?);
        let weak = Rc::downgrade(&advertiser);
        server.connect_summary_changed(move |summary| {
            let Some(advertiser) = weak.upgrade() else {
                return;
            };
            if let Some(advertiser) = advertiser.as_ref() {
                let advert = advert_for(summary.collection_refs(), summary.last_modified, index);
                if let Err(e) = advertiser.update(&advert) {
                    glib::g_warning!(LOG_DOMAIN, "cannot update the advertisement: {e}");
                }
            }
        });
        glib::g_message!(
            LOG_DOMAIN,
            "sharing {} at {}",
            repo.display(),
            server.urls().join(", ")
        );
        Ok(Self {
            server,
            _advertiser: advertiser,
        })
    }
}

impl Drop for Sharing {
    fn drop(&mut self) {
        self.server.stop();
    }
}
