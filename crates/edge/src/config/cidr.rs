//! An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address), as written in
//! `listen.trusted_proxies`.
//!
//! Peers arrive over dual-stack sockets, so an IPv4 client may show up as the IPv4-mapped IPv6
//! address `::ffff:a.b.c.d`. Both the networks (when parsed) and the addresses (when checked)
//! are brought to their canonical form, so `10.0.0.0/8` matches such a peer and a network
//! written as `::ffff:10.0.0.0/104` means the same as `10.0.0.0/8`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::Deserialize;

/// An IP network: an address and how many of its leading bits are the network.
///
/// Host bits written after the prefix are masked away (`10.1.2.3/8` is `10.0.0.0/8`): what the
/// author meant is unambiguous, and the prefix is what decides membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    /// The network address, host bits zero; IPv4 whenever the network is IPv4-mapped.
    addr: IpAddr,
    /// Network bits: at most 32 for IPv4 and 128 for IPv6.
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an IP address or network (`10.0.0.0/8`, `::1/128`): {reason}")]
pub struct CidrParseError {
    input: String,
    reason: &'static str,
}

// === impl Cidr ===

impl Cidr {
    /// The network of `addr` with `prefix` leading bits, or `None` if the prefix is longer than
    /// the address (32 bits for IPv4, 128 for IPv6). Host bits are masked away.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        match addr {
            IpAddr::V4(v4) => {
                (prefix <= 32).then(|| Self { addr: IpAddr::V4(mask_v4(v4, prefix)), prefix })
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return None;
                }
                // `::ffff:a.b.c.d/96+n` is the IPv4 network `a.b.c.d/n`: stored that way so
                // that it matches canonicalised peers with one comparison.
                if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                    return Self::new(IpAddr::V4(v4), prefix - 96);
                }
                Some(Self { addr: IpAddr::V6(mask_v6(v6, prefix)), prefix })
            }
        }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of network bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address counts as the IPv4
    /// address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == net,
            // An IPv6 network shorter than /96 (e.g. `::/0`) can span the mapped IPv4 range.
            (IpAddr::V6(net), IpAddr::V4(ip)) => mask_v6(ip.to_ipv6_mapped(), self.prefix) == net,
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    // `checked_shl` because shifting a u32 by 32 overflows: /0 keeps no bits.
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason| CidrParseError { input: s.to_owned(), reason };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| error("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // `u8::from_str` accepts a leading `+`; a prefix is plain digits.
            Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(error("the prefix length is not a number"));
            }
            Some(p) => p.parse().map_err(|_| error("the prefix length is too long"))?,
        };
        Self::new(addr, prefix).ok_or_else(|| {
            error(if max == 32 {
                "an IPv4 prefix is at most 32 bits"
            } else {
                "an IPv6 prefix is at most 128 bits"
            })
        })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((net.addr(), net.prefix()), (ip("10.0.0.0"), 8));
        let host: Cidr = "192.168.1.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.168.1.7/32");
        let v6: Cidr = "::1".parse().unwrap();
        assert_eq!(v6.to_string(), "::1/128");
        assert_eq!("::1/128".parse::<Cidr>().unwrap(), v6);
    }

    #[test]
    fn host_bits_are_masked() {
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("fd00::1:2/16".parse::<Cidr>().unwrap().to_string(), "fd00::/16");
        assert_eq!("1.2.3.4/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/999",
            "10.0.0/8",
            "proxy.internal",
            "",
            "10.0.0.0/8/8",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn contains_respects_the_prefix() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let host: Cidr = "192.168.1.7".parse().unwrap();
        assert!(host.contains(ip("192.168.1.7")));
        assert!(!host.contains(ip("192.168.1.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("::ffff:11.1.2.3")));
        // A mapped network is the IPv4 network it carries.
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, net);
        assert!(mapped.contains(ip("10.9.9.9")));
        // Every address, of either family, is in `::/0`.
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains(ip("10.0.0.1")) && all.contains(ip("2001:db8::1")));
    }
}
