//! Pod source validation (`sixlane_common::source`): the first step of `sl_from_pod`, so a pod
//! cannot send from another pod's address through forwarding, services or NAT64 alike.
//!
//! It reads the fixed IPv6 header itself rather than the parser's result: a packet the parser
//! gives up on (an extension chain too long to walk) is passed to the kernel, which would
//! forward it. A frame too short for its header is left to the parser and the kernel, which
//! drop it.

use core::mem::MaybeUninit;

use aya_ebpf::{macros::map, maps::HashMap, programs::TcContext};
use network_types::{eth::EthHdr, ip::Ipv6Hdr};
use sixlane_common::{
    net::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6},
    source::{ANY, SOURCE_ENTRIES, SourceKey, always_allowed},
};

use crate::{
    mem,
    packet::{self, ptr_at},
};

// Pinned: the CNI plugin writes it, and it outlives agent restarts like the attached programs.
#[map(name = "SL_POD_SOURCES")]
static SL_POD_SOURCES: HashMap<SourceKey, u32> = HashMap::pinned(SOURCE_ENTRIES, 0);

/// Whether the pod behind this veth may send this frame: IPv6 from one of its recorded
/// addresses, link-local or unspecified; anything from a veth that is not validated. IPv4 is
/// never a pod's own (pods are IPv6-only), so it passes only where validation is off.
#[inline(always)]
pub fn allowed(ctx: &TcContext) -> bool {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return true;
    };
    // SAFETY: bounds-checked by ptr_at.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let ifindex = packet::ifindex(ctx);
    match ether_type {
        ETH_P_IPV6 => {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN) else {
                return true;
            };
            // SAFETY: bounds-checked by ptr_at.
            let src = unsafe { (*ip).src_addr };
            if always_allowed(&src) {
                return true;
            }
            // SAFETY: the value is only tested for presence.
            if unsafe { SL_POD_SOURCES.get(SourceKey::new(ifindex, src)) }.is_some() {
                return true;
            }
            !enforced(ifindex)
        }
        ETH_P_IP => !enforced(ifindex),
        _ => true,
    }
}

/// Whether the veth's marker says to drop unrecorded sources: no marker, not validated; any
/// value but the opt-out enforces (a value this build does not know fails closed).
#[inline(always)]
fn enforced(ifindex: u32) -> bool {
    // The marker's key is the ifindex and `::`: zeroed word by word (a zero array is a
    // `memset` call in BPF, see `mem`).
    let mut slot = MaybeUninit::<SourceKey>::uninit();
    // SAFETY: all-zero bytes are a valid key (plain integers).
    let key = unsafe { mem::zero_in(&mut slot) };
    key.ifindex = ifindex;
    // SAFETY: the value is copied out at once.
    let mode = unsafe { SL_POD_SOURCES.get(key) }.copied();
    matches!(mode, Some(m) if m != ANY)
}
