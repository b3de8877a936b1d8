//! Advertising a served repository on the LAN: one `_ostree_repo._tcp` DNS-SD
//! service (mdns-sd) whose TXT record is what libostree's LAN finder and
//! eos-updater read: `v` = 1, `rb` = a 250-byte bloom filter (k = 1, hash id 1) of
//! the collection-refs the summary lists, `st` = the summary's last-modified time
//! and `ri` = the repository index.
//!
//! Network safety: the daemon runs only on the interfaces `FERRY_LAN_INTERFACES`
//! allows (as discovery reads it); with `none` nothing is advertised. The interface
//! selection is sent to the daemon before the service, so no packet ever leaves on
//! another interface. [`Advertiser::withdraw`] (also run on drop) sends the goodbye.

use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, TxtProperty};

use crate::sources::lan::bloom::{Bloom, EOS_UPDATER_BYTES, EOS_UPDATER_K};
use crate::sources::lan::txt::RepoAdvert;
use crate::sources::lan::{LanInterfaces, SERVICE_TYPE};

use super::ShareError;

/// The advertisement for a repository offering `collection_refs`.
pub fn advert_for<'a>(
    collection_refs: impl IntoIterator<Item = (&'a str, &'a str)>,
    summary_timestamp: u64,
    repo_index: u16,
) -> RepoAdvert {
    let mut bloom = Bloom::new(EOS_UPDATER_BYTES, EOS_UPDATER_K).expect("valid bloom parameters");
    for (collection_id, ref_name) in collection_refs {
        bloom.add(collection_id, ref_name);
    }
    RepoAdvert {
        bloom,
        summary_timestamp,
        repo_index,
    }
}

/// The TXT properties of `advert` (binary values).
pub fn txt_properties(advert: &RepoAdvert) -> Vec<TxtProperty> {
    advert
        .encode()
        .into_iter()
        .map(|(key, value)| TxtProperty::from((key, value)))
        .collect()
}

/// A DNS-SD label: at most 63 bytes, cut on a character boundary.
fn label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() + c.len_utf8() > 63 {
            break;
        }
        out.push(c);
    }
    out
}

/// This computer's name, reduced to what a DNS host label may hold.
pub fn host_label() -> String {
    let name: String = glib::host_name()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "ferry".to_owned()
    } else {
        name.to_owned()
    }
}

/// Where and how the service is published.
#[derive(Clone, Debug)]
pub struct AdvertSettings {
    /// The service instance name (what browsers show).
    pub instance: String,
    /// The host name of the address records, `NAME.local.`. Ferry uses a name of its
    /// own so that it never competes with the system's responder (avahi) for the
    /// computer's host name.
    pub host: String,
    pub port: u16,
    /// The address served on, if only one; `None`: the addresses of the interfaces
    /// advertised on.
    pub address: Option<IpAddr>,
}

impl AdvertSettings {
    /// "Ferry on HOST" for repository 0 (" #RI" appended for others), host
    /// `HOST-ferry.local.`.
    pub fn new(port: u16, repo_index: u16, address: Option<IpAddr>) -> Self {
        let host = host_label();
        let mut instance = format!("Ferry on {host}");
        if repo_index != 0 {
            instance.push_str(&format!(" #{repo_index}"));
        }
        Self {
            instance: label(&instance),
            host: format!("{host}-ferry.local."),
            port,
            address: address.filter(|ip| !ip.is_unspecified()),
        }
    }
}

/// A published `_ostree_repo._tcp` service.
pub struct Advertiser {
    daemon: ServiceDaemon,
    settings: AdvertSettings,
    fullname: String,
    withdrawn: bool,
}

impl Advertiser {
    /// Publishes `advert` on the interfaces `interfaces` allows. `Ok(None)` when
    /// they are [`LanInterfaces::Off`] (nothing is started).
    pub fn start(
        interfaces: &LanInterfaces,
        settings: AdvertSettings,
        advert: &RepoAdvert,
    ) -> Result<Option<Self>, ShareError> {
        let restrict: Vec<(bool, Vec<IfKind>)> = match interfaces {
            LanInterfaces::Off => return Ok(None),
            LanInterfaces::AllNonLoopback => {
                vec![(false, vec![IfKind::LoopbackV4, IfKind::LoopbackV6])]
            }
            LanInterfaces::Only(names) => vec![
                (false, vec![IfKind::All]),
                (
                    true,
                    names.iter().map(|n| IfKind::Name(n.clone())).collect(),
                ),
            ],
        };
        let daemon = ServiceDaemon::new().map_err(|e| ShareError::Advertise(e.to_string()))?;
        // Commands are handled in order: the selection holds before the first packet.
        for (enable, kinds) in restrict {
            let result = if enable {
                daemon.enable_interface(kinds)
            } else {
                daemon.disable_interface(kinds)
            };
            if let Err(e) = result {
                let _ = daemon.shutdown();
                return Err(ShareError::Advertise(e.to_string()));
            }
        }
        let info = Self::service_info(&settings, advert)?;
        let fullname = info.get_fullname().to_owned();
        if let Err(e) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(ShareError::Advertise(e.to_string()));
        }
        Ok(Some(Self {
            daemon,
            settings,
            fullname,
            withdrawn: false,
        }))
    }

    fn service_info(
        settings: &AdvertSettings,
        advert: &RepoAdvert,
    ) -> Result<ServiceInfo, ShareError> {
        let addresses = settings
            .address
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &settings.instance,
            &settings.host,
            addresses.as_str(),
            settings.port,
            txt_properties(advert),
        )
        .map_err(|e| ShareError::Advertise(e.to_string()))?;
        Ok(if settings.address.is_none() {
            info.enable_addr_auto()
        } else {
            info
        })
    }

    /// The service's full DNS-SD name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    pub fn settings(&self) -> &AdvertSettings {
        &self.settings
    }

    /// Re-announces the service with a new TXT record (the summary changed).
    pub fn update(&self, advert: &RepoAdvert) -> Result<(), ShareError> {
        let info = Self::service_info(&self.settings, advert)?;
        self.daemon
            .register(info)
            .map_err(|e| ShareError::Advertise(e.to_string()))
    }

    /// Withdraws the service (mDNS goodbye packets) and stops the daemon.
    pub fn withdraw(mut self) -> Result<(), ShareError> {
        self.withdraw_inner()
    }

    fn withdraw_inner(&mut self) -> Result<(), ShareError> {
        if std::mem::replace(&mut self.withdrawn, true) {
            return Ok(());
        }
        let result = self
            .daemon
            .unregister(&self.fullname)
            .map_err(|e| ShareError::Advertise(e.to_string()))
            .and_then(|status| {
                // The goodbye is sent before the status is reported.
                status
                    .recv_timeout(Duration::from_secs(3))
                    .map(drop)
                    .map_err(|e| ShareError::Advertise(format!("no answer to the withdrawal: {e}")))
            });
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(3));
        }
        result
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        let _ = self.withdraw_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::lan::txt::TxtAttributes;

    #[test]
    fn advert_matches_eos_updater_parameters() {
        let advert = advert_for([("com.example", "ref")], 1_483_228_800, 0);
        assert_eq!(advert.bloom.as_bytes().len(), 250);
        assert_eq!(advert.bloom.k(), 1);
        assert_eq!(advert.bloom.set_bits(), vec![678]);
        let properties = txt_properties(&advert);
        let strings: Vec<Vec<u8>> = properties
            .iter()
            .map(|p| {
                let mut s = p.key().as_bytes().to_vec();
                s.push(b'=');
                s.extend_from_slice(p.val().unwrap_or_default());
                s
            })
            .collect();
        // rb=(1, 1, 250 bytes): 255 bytes, the most one TXT string can hold.
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(
            RepoAdvert::decode(&TxtAttributes::parse(strings)).unwrap(),
            advert
        );
        let info = ServiceInfo::new(SERVICE_TYPE, "x", "h.local.", "", 1, properties);
        assert!(info.is_ok());
    }

    #[test]
    fn names() {
        let settings = AdvertSettings::new(43381, 0, None);
        assert!(settings.instance.starts_with("Ferry on "));
        assert!(settings.host.ends_with("-ferry.local."));
        assert_eq!(label(&"é".repeat(40)).len(), 62);
        assert_eq!(
            AdvertSettings::new(1, 3, Some("0.0.0.0".parse().unwrap())).address,
            None
        );
        assert!(AdvertSettings::new(1, 3, None).instance.ends_with(" #3"));
    }
}
