//! Where a source's bytes travel from, as a user counts them: a drive, a nearby
//! computer, or the internet. Metered connections spare the internet only, the
//! download limit may apply to it only, and "where it came from" counts by it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::model::{Source, SourceKind};

/// Where a source's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Locality {
    /// A drive, a sideload directory, any `file://` source.
    Drive,
    /// A computer on the local network (a LAN peer, a static source at a local
    /// address).
    Nearby,
    /// Everything else: the upstream, static HTTP sources beyond the local network.
    Internet,
}

impl Locality {
    pub fn as_str(self) -> &'static str {
        match self {
            Locality::Drive => "drive",
            Locality::Nearby => "nearby",
            Locality::Internet => "internet",
        }
    }
}

impl Source {
    /// Where this source's bytes come from. The upstream counts as the internet
    /// wherever its URL points (it is what the user would otherwise pay for); a
    /// static HTTP source counts as nearby only at a local address.
    pub fn locality(&self) -> Locality {
        match self.kind {
            SourceKind::Usb => Locality::Drive,
            SourceKind::Lan => Locality::Nearby,
            SourceKind::Internet => Locality::Internet,
            SourceKind::Static => uri_locality(&self.uri),
        }
    }
}

/// The locality of a source given by its URI alone (static sources).
pub fn uri_locality(uri: &str) -> Locality {
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Locality::Drive;
    }
    let host = glib::Uri::parse(uri, glib::UriFlags::NONE)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_string()));
    match host {
        Some(host) if is_local_host(&host) => Locality::Nearby,
        _ => Locality::Internet,
    }
}

/// Whether `host` (a name or an address, IPv6 with or without brackets and zone)
/// is on this computer or its local network: loopback, RFC 1918, link-local,
/// unique local (fc00::/7), `localhost` and mDNS `.local` names.
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.split('%').next().unwrap_or(host);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => is_local_v4(v4),
        Ok(IpAddr::V6(v6)) => is_local_v6(v6),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local")
        }
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_private() || ip.is_link_local()
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_local_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        // fc00::/7, unique local
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_and_names_are_nearby() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.20",
            "169.254.3.4",
            "::1",
            "[::1]",
            "fd12:3456::1",
            "fc00::1",
            "fe80::1%eth0",
            "[fe80::1%25eth0]",
            "::ffff:192.168.0.2",
            "localhost",
            "printer.local",
            "Laptop.LOCAL.",
        ] {
            assert!(is_local_host(host), "{host} should be local");
        }
    }

    #[test]
    fn public_addresses_and_names_are_the_internet() {
        for host in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.64.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "example.com",
            "local.example.com",
            "ostree.example.org",
        ] {
            assert!(!is_local_host(host), "{host} should not be local");
        }
    }

    #[test]
    fn static_sources_are_placed_by_their_uri() {
        assert_eq!(uri_locality("file:///media/stick/repo"), Locality::Drive);
        assert_eq!(uri_locality("/srv/repo"), Locality::Drive);
        assert_eq!(
            uri_locality("http://192.168.0.5:8080/repo"),
            Locality::Nearby
        );
        assert_eq!(uri_locality("http://[fd00::5]:8080/"), Locality::Nearby);
        assert_eq!(
            uri_locality("https://mirror.example.org/repo"),
            Locality::Internet
        );
        let mut upstream = Source::new(
            "upstream:origin".into(),
            SourceKind::Internet,
            "127.0.0.1".into(),
            "http://127.0.0.1:8000".into(),
        );
        assert_eq!(upstream.locality(), Locality::Internet);
        upstream.kind = SourceKind::Lan;
        assert_eq!(upstream.locality(), Locality::Nearby);
    }
}
