//! Neighbor Discovery (RFC 4861) for addresses this node owns on an uplink's link: the pinned
//! table the uplink program answers Neighbor Solicitations from, and the wire constants of the
//! messages it reads and writes.

/// Entries of `layout::MAP_NDP_OWNED`: the pods of one node plus the LoadBalancer IPs it
/// announces, with room to spare.
pub const OWNED_ENTRIES: u32 = 4096;

/// What an owned address is. Pods are answered for as long as they are in the table; a
/// LoadBalancer IP only while the agent's lease (`layout::MAP_NDP_LEASE`) runs, so a node
/// whose agent died stops answering for it before another node takes it over.
pub mod kind {
    /// A pod of this node.
    pub const POD: u8 = 1;
    /// A LoadBalancer IP this node announces in L2 mode.
    pub const LB: u8 = 2;
}

/// An address the node answers for, keyed by the address (16 bytes, network order): on which
/// uplink (`ifindex`) and with which link-layer address (`mac`, the uplink's). A solicitation
/// arriving on another interface is not answered.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// One of [`kind`].
    pub kind: u8,
    pub _pad: u8,
}
crate::map_type!(Owned, 12);

/// The lease under which the datapath answers for LoadBalancer IPs: `layout::MAP_NDP_LEASE`
/// holds one `u64`, the `CLOCK_MONOTONIC` time in nanoseconds (the kernel's `ktime_get_ns`)
/// until which they are answered. The agent moves it forward while it runs.
pub const LEASE_KEY: u32 = 0;

/// ICMPv6 Neighbor Solicitation and Advertisement (RFC 4861 §4.3, §4.4).
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
/// NS/NA without options: type, code, checksum, 4 reserved/flag bytes, target address.
pub const ND_HLEN: usize = 24;
/// Option types (RFC 4861 §4.6): source and target link-layer address.
pub const OPT_SOURCE_LLA: u8 = 1;
pub const OPT_TARGET_LLA: u8 = 2;
/// Options are counted in units of 8 bytes.
pub const OPT_UNIT: usize = 8;
/// Hop limit of every Neighbor Discovery message (RFC 4861 §7.1.1: anything else is invalid).
pub const HOP_LIMIT: u8 = 255;

/// NA flags, as the 32-bit field after the checksum (host order).
pub mod na_flags {
    pub const ROUTER: u32 = 1 << 31;
    pub const SOLICITED: u32 = 1 << 30;
    pub const OVERRIDE: u32 = 1 << 29;
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX with the
/// low 24 bits of `a`.
pub const fn solicited_node(a: &[u8; 16]) -> [u8; 16] {
    [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, a[13], a[14], a[15],
    ]
}

/// Whether `a` is a solicited-node multicast address (of any address). Compared as two words:
/// a byte loop may become a `bcmp` call, which the BPF target does not have.
#[inline(always)]
pub fn is_solicited_node(a: &[u8; 16]) -> bool {
    let hi = u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let lo = u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    hi == 0xff02_0000_0000_0000 && lo & 0xffff_ffff_ff00_0000 == 0x0000_0001_ff00_0000
}

/// All-nodes multicast, where unsolicited advertisements and answers to DAD probes go.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// The Ethernet address of an IPv6 multicast group (RFC 2464 §7): 33:33 and the low 32 bits.
pub const fn multicast_mac(a: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, a[12], a[13], a[14], a[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_addresses() {
        let a: [u8; 16] =
            core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x12, 0x3456).octets();
        let s = solicited_node(&a);
        assert_eq!(
            core::net::Ipv6Addr::from(s),
            "ff02::1:ff12:3456".parse::<core::net::Ipv6Addr>().unwrap()
        );
        assert!(is_solicited_node(&s));
        assert!(!is_solicited_node(&ALL_NODES));
        assert!(!is_solicited_node(&a));
        assert_eq!(multicast_mac(&ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
    }
}
