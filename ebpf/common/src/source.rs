//! Pod source validation: the pinned table of the sources each pod may send from, keyed by the
//! host-side veth the pod's packets arrive on (see docs/cni.md, "Source validation").
//!
//! The CNI plugin writes a pod's entries before it attaches the programs and removes them on
//! DEL and GC. Per veth there is one marker entry (address `::`, which is never looked up as a
//! source: DAD probes from `::` pass without a lookup) saying whether the veth is validated
//! ([`ENFORCE`]) or opted out ([`ANY`]), and one [`ADDRESS`] entry per assigned address. A
//! packet from a recorded address costs one lookup; only a packet from another source looks up
//! the marker. A veth without a marker (attached by a plugin older than the table) is not
//! validated.

/// The pod annotation opting a pod out of source validation (`disabled`; `enabled` is the
/// default). The CNI plugin reads it at ADD (from the runtime), the agent when it validates pods
/// attached before the table existed (from the API server).
pub const SOURCE_VALIDATION_ANNOTATION: &str = "sixlane.io/source-validation";

/// Entries of `layout::MAP_POD_SOURCES`: a node's pods (a marker and one or two addresses each)
/// with room to spare.
pub const SOURCE_ENTRIES: u32 = 8192;

/// Key: the host-side veth's ifindex and a source address (16 bytes, network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceKey {
    pub ifindex: u32,
    pub addr: [u8; 16],
}
crate::map_type!(SourceKey, 20);

/// The address of a veth's marker entry (`::`).
pub const MARKER: [u8; 16] = [0; 16];

/// Value of an address entry: the pod may send from this address.
pub const ADDRESS: u32 = 1;
/// Value of a marker entry: sources other than the recorded addresses are dropped.
pub const ENFORCE: u32 = 2;
/// Value of a marker entry: the pod opted out, any source passes.
pub const ANY: u32 = 3;

impl SourceKey {
    pub const fn new(ifindex: u32, addr: [u8; 16]) -> Self {
        Self { ifindex, addr }
    }

    pub const fn marker(ifindex: u32) -> Self {
        Self::new(ifindex, MARKER)
    }
}

/// Sources that pass without a lookup: link-local (fe80::/10: NDP, router solicitations, before
/// any address is assigned) and the unspecified address (Duplicate Address Detection probes).
/// Compared as two words: a byte loop may become a `bcmp` call, which the BPF target lacks.
#[inline(always)]
pub fn always_allowed(a: &[u8; 16]) -> bool {
    let hi = u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let lo = u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    hi >> 54 == 0x3fa || (hi == 0 && lo == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> [u8; 16] {
        s.parse::<core::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn link_local_and_unspecified_pass_others_do_not() {
        for s in ["fe80::1", "febf:ffff::1", "::"] {
            assert!(always_allowed(&a(s)), "{s}");
        }
        for s in [
            "fec0::1",
            "fe7f::1",
            "::1",
            "fd00::1",
            "64:ff9b::c000:201",
            "ff02::1",
        ] {
            assert!(!always_allowed(&a(s)), "{s}");
        }
    }
}
