//! Which addresses a webhook may reach: no private, loopback, link-local or otherwise
//! internal address unless allowed (a request forged towards the cloud's metadata service or
//! an internal admin port is the classic SSRF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether webhooks may reach internal addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Public addresses only (the default).
    #[default]
    PublicOnly,
    /// Any address (`WEBHOOK_ALLOW_PRIVATE=true`: tests, receivers on a private network).
    AllowPrivate,
}

impl AddressPolicy {
    /// Whether `ip` may be reached.
    pub fn allows(self, ip: IpAddr) -> bool {
        self == AddressPolicy::AllowPrivate || !is_forbidden(ip)
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT (100.64.0.0/10) and the benchmarking range (198.18.0.0/15).
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_forbidden(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7) and link-local (fe80::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Documentation (2001:db8::/32) and NAT64 of internal v4 (64:ff9b::/96).
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064
            && ip.segments()[1] == 0xff9b
            && v4_forbidden(Ipv4Addr::from(
                u32::from(ip.segments()[6]) << 16 | u32::from(ip.segments()[7]),
            )))
}

/// Whether `ip` is internal: private, loopback, link-local, unspecified, multicast,
/// carrier-grade NAT, documentation or reserved, IPv4-mapped IPv6 included.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(is_forbidden(ip), "{bad}");
            assert!(!AddressPolicy::PublicOnly.allows(ip), "{bad}");
            assert!(AddressPolicy::AllowPrivate.allows(ip), "{bad}");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good}");
        }
    }
}
