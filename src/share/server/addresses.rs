//! This computer's interface addresses, for listening where the user shares.

use super::*;

/// One address of this computer: its interface's name, whether that interface is
/// the loopback one, and the address (IPv4, or global IPv6: link-local addresses
/// need a zone, which cannot go into a URL).
pub(super) struct InterfaceAddress {
    pub(super) interface: String,
    pub(super) loopback: bool,
    pub(super) ip: IpAddr,
}

/// Every IPv4 and global IPv6 address of this computer's interfaces.
pub(super) fn interface_address_list() -> Vec<InterfaceAddress> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs' list is walked read-only and freed once.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            let ip = if addr.is_null() {
                None
            } else {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        Some(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                        ((ip.segments()[0] & 0xffc0) != 0xfe80).then_some(IpAddr::V6(ip))
                    }
                    _ => None,
                }
            };
            if let Some(ip) = ip {
                out.push(InterfaceAddress {
                    interface: std::ffi::CStr::from_ptr((*entry).ifa_name)
                        .to_string_lossy()
                        .into_owned(),
                    loopback: (*entry).ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0,
                    ip,
                });
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// This computer's addresses of one family: IPv4, or global IPv6. Loopback last.
pub fn local_addresses(ipv4: bool) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = interface_address_list()
        .into_iter()
        .map(|a| a.ip)
        .filter(|ip| ip.is_ipv4() == ipv4)
        .collect();
    out.sort_by_key(|ip| (ip.is_loopback(), *ip));
    out.dedup();
    out
}

/// The addresses of the interfaces `interfaces` allows: IPv4 and global IPv6; for
/// [`LanInterfaces::Off`], the loopback interface's.
pub fn interface_addresses(interfaces: &LanInterfaces) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = interface_address_list()
        .into_iter()
        .filter(|a| match interfaces {
            LanInterfaces::Off => a.loopback,
            LanInterfaces::AllNonLoopback => !a.loopback,
            LanInterfaces::Only(names) => names.contains(&a.interface),
        })
        .map(|a| a.ip)
        .collect();
    out.sort();
    out.dedup();
    out
}
