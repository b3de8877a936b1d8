//! Nearby computers: DNS-SD browsing for `_ostree_repo._tcp` with `mdns-sd`, and
//! the TXT record and bloom filter codec libostree and eos-updater use.
//!
//! Network safety: the daemon is only created when LAN discovery is on, and is
//! restricted to the configured interfaces (`FERRY_LAN_INTERFACES`) before it is
//! asked to browse, so queries never go out on any other interface.

pub mod bloom;
pub mod txt;

use std::collections::HashSet;
use std::net::IpAddr;

use mdns_sd::{IfKind, ScopedIp, ServiceDaemon, ServiceEvent};

use super::error::SourcesError;

/// The DNS-SD service type, as `mdns-sd` spells it.
pub const SERVICE_TYPE: &str = "_ostree_repo._tcp.local.";

/// Which interfaces LAN discovery may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LanInterfaces {
    /// No LAN discovery at all (no mDNS daemon is started).
    Off,
    /// Every interface except loopback (the default for a normal run).
    AllNonLoopback,
    /// Only these interfaces, by name.
    Only(Vec<String>),
}

/// The environment variable choosing interfaces: a comma-separated list of names,
/// `none` (off) or `all` (every non-loopback interface, the default when unset).
pub const INTERFACES_ENV: &str = "FERRY_LAN_INTERFACES";

impl LanInterfaces {
    /// Parses a `FERRY_LAN_INTERFACES` value.
    pub fn parse(value: &str) -> Result<Self, SourcesError> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("none") {
            return Ok(Self::Off);
        }
        if value.eq_ignore_ascii_case("all") {
            return Ok(Self::AllNonLoopback);
        }
        let mut names = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            // Linux interface names: 1..=15 bytes, no '/', no whitespace, not "." or "..".
            let valid = name.len() <= 15
                && name != "."
                && name != ".."
                && !name.contains('/')
                && !name.contains(':')
                && !name.chars().any(char::is_whitespace);
            if !valid {
                return Err(SourcesError::InvalidInterface(name.to_owned()));
            }
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        if names.is_empty() {
            return Ok(Self::Off);
        }
        Ok(Self::Only(names))
    }

    /// From `FERRY_LAN_INTERFACES`; unset means every non-loopback interface.
    pub fn from_env() -> Result<Self, SourcesError> {
        match std::env::var(INTERFACES_ENV) {
            Ok(value) => Self::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(Self::AllNonLoopback),
            Err(std::env::VarError::NotUnicode(v)) => Err(SourcesError::InvalidInterface(
                v.to_string_lossy().into_owned(),
            )),
        }
    }

    pub fn is_off(&self) -> bool {
        matches!(self, Self::Off)
    }
}

/// A running DNS-SD browser. Shuts the daemon down when dropped.
pub struct LanBrowser {
    daemon: ServiceDaemon,
}

impl LanBrowser {
    /// Starts an mDNS daemon restricted to `interfaces` and browses for
    /// `_ostree_repo._tcp`. `None` when `interfaces` is [`LanInterfaces::Off`].
    pub fn start(
        interfaces: &LanInterfaces,
    ) -> Result<Option<(Self, mdns_sd::Receiver<ServiceEvent>)>, SourcesError> {
        let daemon = match interfaces {
            LanInterfaces::Off => return Ok(None),
            _ => ServiceDaemon::new().map_err(|e| SourcesError::Mdns(e.to_string()))?,
        };
        let browser = Self { daemon };
        // The daemon handles commands in order: the interface selection is in
        // effect before the browse command sends the first query.
        let restrict =
            match interfaces {
                LanInterfaces::Off => Ok(()),
                LanInterfaces::AllNonLoopback => browser
                    .daemon
                    .disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]),
                LanInterfaces::Only(names) => browser
                    .daemon
                    .disable_interface(IfKind::All)
                    .and_then(|()| {
                        browser.daemon.enable_interface(
                            names
                                .iter()
                                .map(|n| IfKind::Name(n.clone()))
                                .collect::<Vec<_>>(),
                        )
                    }),
            };
        restrict.map_err(|e| SourcesError::Mdns(e.to_string()))?;
        let receiver = browser
            .daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| SourcesError::Mdns(e.to_string()))?;
        Ok(Some((browser, receiver)))
    }
}

impl Drop for LanBrowser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        let _ = self.daemon.shutdown();
    }
}

/// The instance name of a service's full name: `peer._ostree_repo._tcp.local.` → `peer`.
pub fn instance_name(fullname: &str) -> &str {
    fullname
        .strip_suffix(SERVICE_TYPE)
        .map(|s| s.trim_end_matches('.'))
        .filter(|s| !s.is_empty())
        .unwrap_or(fullname)
}

/// A host name for display: `peer.local.` → `peer`.
pub fn display_host(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    host.strip_suffix(".local").unwrap_or(host)
}

fn is_ipv6_link_local(ip: &std::net::Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// Whether an address a peer advertises may be fetched from. Loopback and
/// unspecified addresses (`0.0.0.0`, `::`) would point at this computer, not the
/// peer: anyone on the LAN could otherwise steer Ferry to a local service. Multicast
/// and broadcast addresses name no one host. An IPv6 link-local address needs a zone
/// (the interface), which an advertised address lacks and a URI cannot carry
/// (libostree skips them too). IPv4 link-local (169.254/16) is fine: it needs no zone.
/// Addresses given by hand (`--static-source`) are not filtered.
pub fn is_usable_peer_address(ip: IpAddr) -> bool {
    // An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 one.
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
        }
        IpAddr::V6(ip) => {
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || is_ipv6_link_local(&ip))
        }
    }
}

/// The address to fetch from among those a peer advertises: an IPv4 address if
/// there is one (the lowest, for stability), else a global IPv6 address; only
/// [usable](is_usable_peer_address) addresses count.
pub fn choose_address(addresses: &HashSet<ScopedIp>) -> Option<IpAddr> {
    let mut v4: Vec<IpAddr> = Vec::new();
    let mut v6: Vec<IpAddr> = Vec::new();
    for ip in addresses.iter().map(|a| a.to_ip_addr().to_canonical()) {
        if !is_usable_peer_address(ip) {
            continue;
        }
        match ip {
            IpAddr::V4(_) => v4.push(ip),
            IpAddr::V6(_) => v6.push(ip),
        }
    }
    v4.sort();
    v6.sort();
    v4.into_iter().next().or_else(|| v6.into_iter().next())
}

/// `http://ADDRESS:PORT/RI`, the repository's base URI.
pub fn peer_uri(address: IpAddr, port: u16, repo_index: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("http://{a}:{port}/{repo_index}"),
        IpAddr::V6(a) => format!("http://[{a}]:{port}/{repo_index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_env_values() {
        assert_eq!(LanInterfaces::parse("none").unwrap(), LanInterfaces::Off);
        assert_eq!(LanInterfaces::parse("").unwrap(), LanInterfaces::Off);
        assert_eq!(
            LanInterfaces::parse("all").unwrap(),
            LanInterfaces::AllNonLoopback
        );
        assert_eq!(
            LanInterfaces::parse("veth0, eth1,veth0").unwrap(),
            LanInterfaces::Only(vec!["veth0".into(), "eth1".into()])
        );
        assert!(LanInterfaces::parse("a/b").is_err());
        assert!(LanInterfaces::parse("waytoolonginterfacename").is_err());
    }

    #[test]
    fn names_and_uris() {
        assert_eq!(instance_name("peer._ostree_repo._tcp.local."), "peer");
        assert_eq!(instance_name("odd"), "odd");
        assert_eq!(display_host("host.local."), "host");
        assert_eq!(
            peer_uri("10.77.0.1".parse().unwrap(), 43381, 0),
            "http://10.77.0.1:43381/0"
        );
        assert_eq!(
            peer_uri("2001:db8::1".parse().unwrap(), 80, 2),
            "http://[2001:db8::1]:80/2"
        );
    }

    #[test]
    fn address_preference() {
        let set = |addrs: &[&str]| -> HashSet<ScopedIp> {
            addrs
                .iter()
                .map(|a| ScopedIp::from(a.parse::<IpAddr>().unwrap()))
                .collect()
        };
        assert_eq!(
            choose_address(&set(&["fe80::1", "2001:db8::1", "10.0.0.2", "10.0.0.1"])),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            choose_address(&set(&["fe80::1", "2001:db8::1"])),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(choose_address(&set(&["fe80::1"])), None);
    }

    #[test]
    fn advertised_addresses_that_are_not_the_peer_are_ignored() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:0.0.0.0",
            "fe80::1",
            "fe80::1234:5678:9abc:def0",
            "febf::1",
            "224.0.0.251",
            "ff02::fb",
            "255.255.255.255",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(!is_usable_peer_address(ip), "{bad} accepted");
        }
        for good in [
            "10.77.0.1",
            "192.168.1.20",
            "169.254.12.34",
            "2001:db8::1",
            "fd00::5",
            "fec0::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert!(is_usable_peer_address(ip), "{good} refused");
        }
        let set = |addrs: &[&str]| -> HashSet<ScopedIp> {
            addrs
                .iter()
                .map(|a| ScopedIp::from(a.parse::<IpAddr>().unwrap()))
                .collect()
        };
        // A peer advertising only such addresses is not used at all…
        assert_eq!(
            choose_address(&set(&["127.0.0.1", "0.0.0.0", "::1", "::", "fe80::1"])),
            None
        );
        // …and next to a real one, the real one is chosen even though loopback and
        // 0.0.0.0 sort lower.
        assert_eq!(
            choose_address(&set(&["0.0.0.0", "127.0.0.1", "10.77.0.1"])),
            Some("10.77.0.1".parse().unwrap())
        );
        assert_eq!(
            choose_address(&set(&["::1", "::", "169.254.7.7"])),
            Some("169.254.7.7".parse().unwrap())
        );
        assert_eq!(
            choose_address(&set(&["::1", "2001:db8::2"])),
            Some("2001:db8::2".parse().unwrap())
        );
        // An IPv4-mapped address goes into the URI in IPv4 form.
        assert_eq!(
            choose_address(&set(&["::ffff:10.0.0.9"])),
            Some("10.0.0.9".parse().unwrap())
        );
    }
}
