//! Who may connect: `--allow` and `--deny` address ranges, decided on the
//! real peer (after a PROXY header, the client it names, not the balancer).
//!
//! A denied address is refused whatever else matches; with any `--allow`,
//! only the addresses it lists get in, so a client without an address (a
//! Unix socket peer, or one a PROXY header names as such) is refused then.
//! An IPv4 client seen through a dual-stack socket (`::ffff:10.1.2.3`) is
//! matched as the IPv4 address it is.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::transport::PeerAddr;

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange(IpNet);

impl AddressRange {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 taken as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<AddressRange, String> {
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => text
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("'{text}' is not an address range (like 10.0.0.0/8, ::1/128 or 192.0.2.7)"))?,
        };
        // Written as 10.1.2.3/8, it means the network 10.0.0.0/8.
        Ok(AddressRange(net.trunc()))
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The rules: address ranges allowed and denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    pub allow: Vec<AddressRange>,
    pub deny: Vec<AddressRange>,
}

impl AccessList {
    /// Whether there are rules at all.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `peer` may connect.
    pub fn permits(&self, peer: &PeerAddr) -> bool {
        let PeerAddr::Tcp(addr) = peer else {
            return self.allow.is_empty();
        };
        let ip = addr.ip();
        if self.deny.iter().any(|range| range.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|range| range.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> PeerAddr {
        PeerAddr::Tcp(text.parse().unwrap())
    }

    fn ranges(texts: &[&str]) -> Vec<AddressRange> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let rules = AccessList {
            allow: ranges(&["127.0.0.0/8", "::1"]),
            deny: ranges(&["127.0.0.2"]),
        };
        assert!(rules.permits(&peer("127.0.0.1:5000")));
        assert!(!rules.permits(&peer("127.0.0.2:5000")), "denied though allowed");
        assert!(rules.permits(&peer("[::1]:5000")));
        assert!(!rules.permits(&peer("192.0.2.7:5000")), "not allowed");
        assert!(
            !rules.permits(&PeerAddr::Unix(None)),
            "a peer without an address is not in any --allow"
        );
        let open = AccessList {
            allow: vec![],
            deny: ranges(&["10.0.0.0/8"]),
        };
        assert!(open.permits(&peer("192.0.2.7:1")) && !open.permits(&peer("10.9.9.9:1")));
        assert!(open.permits(&PeerAddr::Unix(None)), "no --allow: only --deny restricts");
    }

    #[test]
    fn mapped_ipv4_is_matched_as_ipv4() {
        let rules = AccessList {
            allow: vec![],
            deny: ranges(&["10.0.0.0/8"]),
        };
        assert!(!rules.permits(&peer("[::ffff:10.1.2.3]:80")));
    }

    #[test]
    fn ranges_parse_with_a_clear_error() {
        assert_eq!("10.1.2.3/8".parse::<AddressRange>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<AddressRange>().unwrap().to_string(), "::1/128");
        assert!(
            "ten"
                .parse::<AddressRange>()
                .unwrap_err()
                .contains("not an address range")
        );
    }
}
