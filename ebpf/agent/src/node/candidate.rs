//! Candidates for the node address: an IPv6 address configured on this host with the kernel's
//! flags ([`LocalAddr`]), why an address cannot be a node's ([`Unusable`]) and a candidate the
//! choice passed over ([`Rejected`]). The rules that pick one are `node::address`'s; this module
//! imports nothing of the crate, so the crate's error can name these types.

use std::{fmt, net::Ipv6Addr};

use serde::{Deserialize, Serialize};

/// An IPv6 address configured on this host, with the kernel's flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAddr {
    pub addr: Ipv6Addr,
    pub interface: String,
    pub prefix_len: u8,
    /// `IFA_F_PERMANENT`: configured statically or by DHCPv6, not by SLAAC.
    pub permanent: bool,
    /// `IFA_F_SECONDARY` on IPv6: an RFC 8981 temporary (privacy) address.
    pub temporary: bool,
    pub deprecated: bool,
    pub tentative: bool,
    pub dad_failed: bool,
}

impl LocalAddr {
    /// Why this address cannot be the node address, if it cannot: what it is, then its flags.
    pub fn unusable(&self) -> Option<Unusable> {
        unusable_node_address(self.addr).or(if self.temporary {
            Some(Unusable::Temporary)
        } else if self.dad_failed {
            Some(Unusable::DadFailed)
        } else if self.tentative {
            Some(Unusable::Tentative)
        } else if self.deprecated {
            Some(Unusable::Deprecated)
        } else {
            None
        })
    }
}

/// Why an address cannot be a node's (or a pod CIDR's). Displayed as the reason a log,
/// `status` or a configuration problem gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    Unspecified,
    Loopback,
    Multicast,
    /// kubernetes#130409: other nodes cannot route to it.
    LinkLocal,
    Ipv4Mapped,
    NotGlobalOrUla,
    /// An RFC 8981 privacy address: it rotates (talos#9725).
    Temporary,
    DadFailed,
    Tentative,
    Deprecated,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unusable::Unspecified => "the unspecified address",
            Unusable::Loopback => "the loopback address",
            Unusable::Multicast => "a multicast address",
            Unusable::LinkLocal => "link-local (other nodes cannot route to it; kubernetes#130409)",
            Unusable::Ipv4Mapped => "an IPv4-mapped address",
            Unusable::NotGlobalOrUla => "neither global unicast (2000::/3) nor ULA (fc00::/7)",
            Unusable::Temporary => "is a temporary (privacy) address that rotates",
            Unusable::DadFailed => "failed duplicate address detection",
            Unusable::Tentative => "is tentative (duplicate address detection not finished)",
            Unusable::Deprecated => "is deprecated (preferred lifetime over)",
        })
    }
}

/// Why `a` cannot be a node (or pod) address whatever its flags, if it cannot.
pub fn unusable_node_address(a: Ipv6Addr) -> Option<Unusable> {
    let s = a.segments();
    if a.is_unspecified() {
        Some(Unusable::Unspecified)
    } else if a.is_loopback() {
        Some(Unusable::Loopback)
    } else if a.is_multicast() {
        Some(Unusable::Multicast)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(Unusable::LinkLocal)
    } else if a.to_ipv4_mapped().is_some() {
        Some(Unusable::Ipv4Mapped)
    } else if s[0] & 0xfe00 != 0xfc00 && s[0] & 0xe000 != 0x2000 {
        Some(Unusable::NotGlobalOrUla)
    } else {
        None
    }
}

pub fn is_ula(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xfe00 == 0xfc00
}

/// Modified EUI-64 interface identifier (`…ff:fe…` in the middle): derived from the MAC.
pub fn is_eui64(a: Ipv6Addr) -> bool {
    let o = a.octets();
    o[11] == 0xff && o[12] == 0xfe
}

/// A rejected candidate and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub addr: Ipv6Addr,
    pub interface: Option<String>,
    pub why: String,
}
