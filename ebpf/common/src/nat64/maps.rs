//! Types of the NAT64 maps (RFC 6146 binding and session tables, the configuration) shared by
//! the datapath and the agent. Map names are in [`crate::layout`].
//!
//! Both tables hold two entries per binding or session, one per direction, so each side of the
//! translator finds its state with a single lookup keyed by what its packets carry:
//!
//! ```text
//! BIB      (proto, OUT, X', x)        -> (T, t)     endpoint-independent mapping
//!          (proto, IN,  T,  t)        -> (X', x)    port reservation, EIF lookups
//! SESSIONS (proto, OUT, X', x, Y, y)  -> (T, t)     + TCP state, last seen
//!          (proto, IN,  T,  t, Z, z)  -> (X', x)    + last seen
//! ```
//!
//! Static bindings (`SL_N64_STATIC`, written by the agent from `nat64.staticBindings`) have the
//! BIB's two entries per binding in a map of their own, never evicted and never collected; their
//! `created_ns` is 0. Their IPv4 ports lie outside the dynamic range of their protocol, so the
//! two tables never hold the same (T, t).
//!
//! X' is the pod's IPv6 address, (T, t) the pool address and port, Y = Z the IPv4 peer (whose
//! IPv6 form is the RFC 6052 embedding). For ICMP queries the "ports" are echo identifiers and
//! the peer port is zero. IPv4 addresses in 16-byte fields occupy the first 4 bytes, the rest
//! zero.

use crate::net::proto;

/// Direction tag of an entry keyed by the IPv6 side.
pub const DIR_OUT: u8 = 0;
/// Direction tag of an entry keyed by the IPv4 side.
pub const DIR_IN: u8 = 1;

/// Key of the binding table (BIB).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BibKey {
    pub proto: u8,
    pub dir: u8,
    /// Port or ICMP identifier, host byte order.
    pub port: u16,
    pub addr: [u8; 16],
}
crate::map_type!(BibKey, 20);

/// Value of the binding table: the other side's transport address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bib {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad0: u16,
    pub _pad1: u32,
    /// When the binding was made (`bpf_ktime_get_coarse_ns`, CLOCK_MONOTONIC_COARSE): garbage
    /// collection leaves young bindings alone while their first session is being written.
    pub created_ns: u64,
}
crate::map_type!(Bib, 32);

/// Key of the session table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub proto: u8,
    pub dir: u8,
    pub _pad: u16,
    /// Local port (x on the IPv6 side, t on the IPv4 side) or ICMP identifier, host order.
    pub port: u16,
    /// The IPv4 peer's port (y = z), host order; zero for ICMP.
    pub remote_port: u16,
    /// X' (OUT) or T (IN, first 4 bytes).
    pub addr: [u8; 16],
    /// The IPv4 peer Y = Z.
    pub remote: [u8; 4],
}
crate::map_type!(SessionKey, 28);

/// Value of the session table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// T (OUT entry, first 4 bytes) or X' (IN entry).
    pub addr: [u8; 16],
    /// t (OUT) or x (IN), host order.
    pub port: u16,
    /// TCP state ([`super::tcp::State`]), kept in the OUT entry.
    pub state: u8,
    pub flags: u8,
    /// IN entries of sessions a local pod opened: the host-side veth it sent from (0 = unknown,
    /// and always 0 in OUT entries). Replies go straight back into that pod
    /// (`bpf_redirect_peer`) through its learned link ([`PodLink`]) while that veth exists, else
    /// while the node's route to the pod still leads out of it.
    pub ifindex: u32,
    /// Last packet in this entry's direction (`bpf_ktime_get_coarse_ns`,
    /// CLOCK_MONOTONIC_COARSE).
    pub last_seen_ns: u64,
}
crate::map_type!(Session, 32);

/// Value of the pod link table, keyed by the host-side veth's ifindex: the Ethernet addresses of
/// a local pod's veth pair, learned from the first packet of each session the pod opens. Replies
/// of sessions that recorded this veth (`Session::ifindex`) are delivered straight into the
/// pod with these addresses, without a route lookup per packet, while the veth exists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodLink {
    /// The pod's own interface (destination of replies).
    pub pod_mac: [u8; 6],
    /// The host side of the veth (source of replies).
    pub host_mac: [u8; 6],
    pub _pad: u32,
}
crate::map_type!(PodLink, 16);

/// Static bindings the datapath can hold (two `SL_N64_STATIC` entries each).
pub const MAX_STATIC_BINDINGS: usize = 1024;

/// Pool addresses the datapath can hold.
pub const MAX_POOL_ADDRS: usize = 16;

/// An inclusive port range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}
crate::map_type!(PortRange, 4);

impl PortRange {
    /// Number of ports (0 for an empty or inverted range).
    #[inline(always)]
    pub const fn len(&self) -> u32 {
        if self.hi < self.lo {
            0
        } else {
            self.hi as u32 - self.lo as u32 + 1
        }
    }

    #[inline(always)]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    pub const fn contains(&self, port: u16) -> bool {
        port >= self.lo && port <= self.hi
    }
}

/// Index of a protocol's port range in [`Config::ports`].
#[inline(always)]
pub const fn proto_index(proto: u8) -> Option<usize> {
    match proto {
        proto::TCP => Some(0),
        proto::UDP => Some(1),
        proto::ICMP | proto::ICMPV6 => Some(2),
        _ => None,
    }
}

/// [`Config::flags`]: translate on this node (it has IPv4). Without it the NAT64 stages leave
/// prefix traffic to the kernel, which routes it to a node that translates.
pub const CFG_ENABLED: u8 = 1;
/// The prefix is the Well-Known Prefix: refuse non-global IPv4 destinations (RFC 6052 §3.1).
pub const CFG_WKP_STRICT: u8 = 2;
/// Endpoint-independent filtering for UDP (RFC 4787 REQ-8, Jool's default): an IPv4 host may
/// reach a pod's existing binding even if the pod never sent to it. Off: address-and-port
/// dependent filtering.
pub const CFG_EIF_UDP: u8 = 4;
/// Clamp the TCP MSS of SYNs, in both directions, to what the IPv4 side carries
/// ([`Config::mss_max`]).
pub const CFG_CLAMP_MSS: u8 = 8;
/// Traffic class 0 on IPv6 packets translated from IPv4, instead of the IPv4 TOS (Jool's
/// `zeroize-traffic-class`).
pub const CFG_ZERO_TRAFFIC_CLASS: u8 = 16;
/// TOS [`Config::tos`] on IPv4 packets translated from IPv6, instead of the IPv6 traffic class
/// (Jool's `override-tos` and `tos`).
pub const CFG_OVERRIDE_TOS: u8 = 32;
/// ICMPv6 errors translated from ICMPv4 ones come from the quoted packet's destination (RFC
/// 6146 §3.5's letter; Jool's `source-icmpv6-errors-better` off). Off: from the IPv4 router
/// that sent the error, so traceroute through the translator shows the real hops.
pub const CFG_ICMP6_FROM_DESTINATION: u8 = 64;
/// Identification 0 on translated IPv4 packets with DF set (atomic datagrams, RFC 6864 §4.1:
/// nothing to reassemble, no counter to leak). Off: generated for every packet (RFC 7915
/// §5.1).
pub const CFG_ZERO_ID_WITH_DF: u8 = 128;

/// IPv4 header + TCP header without options: what an IPv4 MTU holds besides the MSS.
pub const TCP4_OVERHEAD: u32 = 40;

/// The datapath's configuration, one entry in an array map, written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Pref64::/n (bits beyond `prefix_len` zero).
    pub prefix: [u8; 16],
    pub prefix_len: u8,
    pub flags: u8,
    /// Pool addresses in use (`addrs[..n_addrs]`).
    pub n_addrs: u8,
    /// The TOS of translated IPv4 packets with [`CFG_OVERRIDE_TOS`].
    pub tos: u8,
    /// Port (or ICMP identifier) ranges: TCP, UDP, ICMP.
    pub ports: [PortRange; 3],
    /// Secret for the port selection hash (RFC 6056 algorithm 3's F()).
    pub hash_key: [u32; 4],
    pub addrs: [[u8; 4]; MAX_POOL_ADDRS],
    /// The smallest IPv4 path MTU the operator expects (`ipv4Mtu`); 0: the device's MTU only.
    pub ipv4_mtu: u16,
    /// Static bindings configured (`SL_N64_STATIC` holds two entries per binding); 0: the
    /// datapath never looks there, so the node's own traffic to other ports costs no lookup.
    pub statics: u16,
    /// What an unsolicited IPv4 SYN to the dynamic range meets: [`UNSOLICITED_DROP`] or
    /// [`UNSOLICITED_HOLD`].
    pub unsolicited_tcp: u8,
    pub _pad: [u8; 3],
}
crate::map_type!(Config, 120);

/// [`Config::unsolicited_tcp`]: an IPv4 SYN without a session is dropped silently ("drop
/// externally initiated connections").
pub const UNSOLICITED_DROP: u8 = 0;
/// [`Config::unsolicited_tcp`]: RFC 6146 §3.5.2.2: the SYN is held ([`HeldSyn`]) so the pod's
/// own SYN for the same tuple completes a simultaneous open; unanswered after [`HOLD_NS`], the
/// agent answers it with ICMP Port Unreachable.
pub const UNSOLICITED_HOLD: u8 = 1;
/// How long a held SYN waits for the pod's SYN (RFC 6146 §3.5.2.2: 6 s).
pub const HOLD_NS: u64 = 6_000_000_000;
/// Held SYNs the datapath can keep at once (`SL_N64_HELD`); more are dropped, counted.
pub const MAX_HELD_SYNS: u32 = 1024;
/// The start of a held SYN quoted by its ICMP error: the IPv4 header (without options) and the
/// first 8 bytes of the TCP header (RFC 792).
pub const HELD_QUOTE_LEN: usize = 28;

/// Key of a held SYN: (T, t) it went to, (Z, z) it came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeldKey {
    pub t_addr: [u8; 4],
    pub z: [u8; 4],
    /// Host order.
    pub t_port: u16,
    pub z_port: u16,
}
crate::map_type!(HeldKey, 12);

/// A held SYN: when it arrived and what its ICMP error quotes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSyn {
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE).
    pub seen_ns: u64,
    pub quote: [u8; HELD_QUOTE_LEN],
    pub _pad: u32,
}
crate::map_type!(HeldSyn, 40);

impl Default for HeldSyn {
    fn default() -> Self {
        Self {
            seen_ns: 0,
            quote: [0; HELD_QUOTE_LEN],
            _pad: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prefix: [0; 16],
            prefix_len: 0,
            flags: 0,
            n_addrs: 0,
            tos: 0,
            ports: [PortRange::default(); 3],
            hash_key: [0; 4],
            addrs: [[0; 4]; MAX_POOL_ADDRS],
            ipv4_mtu: 0,
            statics: 0,
            unsolicited_tcp: UNSOLICITED_DROP,
            _pad: [0; 3],
        }
    }
}

impl Config {
    /// The index of `a` in the pool, if it is a pool address.
    #[inline(always)]
    pub fn pool_index(&self, a: &[u8; 4]) -> Option<usize> {
        let mut i = 0;
        while i < MAX_POOL_ADDRS {
            if i >= self.n_addrs as usize {
                return None;
            }
            if self.addrs[i] == *a {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The largest MSS a SYN crossing the translator may announce, either way: what the IPv4
    /// device of the flow (`dev_mtu`) and the configured IPv4 path MTU both carry. Like
    /// `--clamp-mss-to-pmtu`, whatever route the pod's stack used to size its own MSS.
    #[inline(always)]
    pub const fn mss_max(&self, dev_mtu: u32) -> u32 {
        let cfg = self.ipv4_mtu as u32;
        let mtu = if cfg != 0 && cfg < dev_mtu {
            cfg
        } else {
            dev_mtu
        };
        mtu.saturating_sub(TCP4_OVERHEAD)
    }

    /// The TOS of an IPv4 packet translated from one with `traffic_class`.
    #[inline(always)]
    pub const fn tos_from(&self, traffic_class: u8) -> u8 {
        if self.flags & CFG_OVERRIDE_TOS != 0 {
            self.tos
        } else {
            traffic_class
        }
    }

    /// The traffic class of an IPv6 packet translated from one with `tos`.
    #[inline(always)]
    pub const fn traffic_class_from(&self, tos: u8) -> u8 {
        if self.flags & CFG_ZERO_TRAFFIC_CLASS != 0 {
            0
        } else {
            tos
        }
    }

    /// The Identification of a translated IPv4 packet without a Fragment Header: `generated`,
    /// or 0 for an atomic datagram (`df`) with [`CFG_ZERO_ID_WITH_DF`].
    #[inline(always)]
    pub const fn identification(&self, df: bool, generated: u16) -> u16 {
        if df && self.flags & CFG_ZERO_ID_WITH_DF != 0 {
            0
        } else {
            generated
        }
    }

    /// The prefix as an RFC 6052 [`super::addr::Prefix`] (no validation: the agent only writes
    /// valid lengths, and an invalid one makes every match fail).
    #[inline(always)]
    pub const fn prefix(&self) -> super::addr::Prefix {
        super::addr::Prefix {
            addr: self.prefix,
            len: self.prefix_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_policies_follow_their_flags() {
        let mut c = Config {
            tos: 0x20,
            ..Config::default()
        };
        assert_eq!(
            (
                c.tos_from(0xb8),
                c.traffic_class_from(0xb8),
                c.identification(true, 7)
            ),
            (0xb8, 0xb8, 7)
        );
        c.flags = CFG_OVERRIDE_TOS | CFG_ZERO_TRAFFIC_CLASS | CFG_ZERO_ID_WITH_DF;
        assert_eq!(
            (
                c.tos_from(0xb8),
                c.traffic_class_from(0xb8),
                c.identification(true, 7)
            ),
            (0x20, 0, 0)
        );
        assert_eq!(c.identification(false, 7), 7);
    }

    #[test]
    fn mss_max_is_the_smaller_mtu_minus_headers() {
        let mut c = Config::default();
        assert_eq!(c.mss_max(1500), 1460);
        c.ipv4_mtu = 1400;
        assert_eq!(c.mss_max(1500), 1360);
        assert_eq!(c.mss_max(1300), 1260);
        assert_eq!(c.mss_max(0), 0);
    }

    #[test]
    fn port_ranges() {
        let r = PortRange {
            lo: 61001,
            hi: 65535,
        };
        assert_eq!(r.len(), 4535);
        assert!(r.contains(61001) && r.contains(65535) && !r.contains(61000));
        assert!(PortRange { lo: 5, hi: 4 }.is_empty());
        assert_eq!(PortRange { lo: 0, hi: 65535 }.len(), 65536);
    }

    #[test]
    fn pool_lookup_respects_count() {
        let mut c = Config {
            n_addrs: 2,
            ..Default::default()
        };
        c.addrs[0] = [198, 18, 0, 1];
        c.addrs[1] = [198, 18, 0, 2];
        c.addrs[2] = [198, 18, 0, 3];
        assert_eq!(c.pool_index(&[198, 18, 0, 2]), Some(1));
        assert_eq!(c.pool_index(&[198, 18, 0, 3]), None);
        assert_eq!(proto_index(6), Some(0));
        assert_eq!(proto_index(17), Some(1));
        assert_eq!(proto_index(1), Some(2));
        assert_eq!(proto_index(58), Some(2));
        assert_eq!(proto_index(132), None);
    }
}
