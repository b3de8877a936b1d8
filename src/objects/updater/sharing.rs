//! Sharing: serving the local repository to nearby computers while the window is
//! open, with the bandwidth limit of the preferences.

use std::path::Path;

use gettextrs::gettext;
use gtk4::{glib, subclass::prelude::*};

use super::FerryUpdater;
use crate::share::server::{Listen, ServerConfig};
use crate::share::{ShareError, Sharing};
use crate::sources::{LanInterfaces, LOG_DOMAIN};

impl FerryUpdater {
    pub(super) fn apply_sharing(&self) {
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
