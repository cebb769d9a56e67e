//! Rewriting a packet's 5-tuple (addresses and ports, checksums updated incrementally), and the
//! service stage's ways of sending it on: routed afresh, or straight into a local pod.

use core::num::NonZeroUsize;

use aya_ebpf::{bindings::bpf_fib_lookup, programs::TcContext};
use network_types::ip::Ipv6Hdr;
use sixlane_common::{
    metrics::Reason,
    net::{ETH_HLEN, ETH_P_IPV6, IPV6_DST_OFF, IPV6_SRC_OFF},
    services::CtKey,
};

use crate::{
    checksum,
    forward::{self, Ports, Route},
    mem::eq16,
    packet::{self, ptr_at},
    verdict::{Res, Verdict},
};

/// Offsets of the IPv6 source and destination addresses in an Ethernet frame.
pub const SRC_OFF: usize = ETH_HLEN + IPV6_SRC_OFF;
pub const DST_OFF: usize = ETH_HLEN + IPV6_DST_OFF;

/// The verdict on a packet rewritten and sent on by `r`: `reason` with `r`'s action, or, if a
/// step failed, dropped (it may be half-rewritten) as `SvcRewriteFailed`.
#[inline(always)]
pub fn rewritten(r: Res<i32>, reason: Reason) -> Verdict {
    match r {
        Ok(action) => Verdict::new(reason, action),
        Err(_) => Verdict::drop(Reason::SvcRewriteFailed),
    }
}

/// Copies the packet's source and destination addresses (32 contiguous bytes) to `dst` with
/// one helper call: a plain copy out of packet memory, which LLVM cannot assume aligned,
/// becomes a call to a byte-wise `memmove`.
///
/// # Safety
/// `dst` must be valid for 32 bytes of writes.
#[inline(always)]
pub unsafe fn load_addrs(ctx: &TcContext, dst: *mut u8) -> Res<()> {
    // SAFETY: the caller guarantees 32 writable bytes at `dst`.
    unsafe { packet::load_raw(ctx, SRC_OFF, dst, 32) }
}

/// Source and destination address of the IPv6 packet in the frame.
#[inline(always)]
pub fn addrs(ctx: &TcContext) -> Option<([u8; 16], [u8; 16])> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked by ptr_at.
    unsafe { Some(((*ip).src_addr, (*ip).dst_addr)) }
}

/// Rewrites the packet's tuple from `from` (what it is) to `to`, field by field, updating the
/// upper-layer checksum at `l4_off` (when `has_l4`: later fragments carry no upper-layer
/// header; the first fragment's checksum already covers the whole datagram).
#[inline(always)]
pub fn apply(ctx: &TcContext, l4_off: usize, has_l4: bool, from: &CtKey, to: &CtKey) -> Res<()> {
    let csum = if has_l4 {
        checksum::l4_csum_offset(from.proto).and_then(|o| NonZeroUsize::new(l4_off + o))
    } else {
        None
    };
    if !eq16(&from.src, &to.src) {
        checksum::set_addr6(ctx, SRC_OFF, &from.src, &to.src, csum, from.proto)?;
    }
    if !eq16(&from.dst, &to.dst) {
        checksum::set_addr6(ctx, DST_OFF, &from.dst, &to.dst, csum, from.proto)?;
    }
    if has_l4 {
        if from.sport != to.sport {
            checksum::set_u16(ctx, l4_off, from.sport, to.sport, csum, from.proto)?;
        }
        if from.dport != to.dport {
            checksum::set_u16(ctx, l4_off + 2, from.dport, to.dport, csum, from.proto)?;
        }
    }
    Ok(())
}

/// What a route lookup may use of a translated tuple (policy rules, multipath hashing).
#[inline(always)]
fn ports(to: &CtKey) -> Ports {
    Ports {
        proto: to.proto,
        sport: to.sport,
        dport: to.dport,
    }
}

/// Routes the (translated) packet to `to` afresh: a FIB lookup as if it arrived on this
/// interface, then on to the next hop. For packets the kernel had already routed towards a
/// frontend.
#[inline(never)]
pub fn reroute(ctx: &TcContext, fib: &mut bpf_fib_lookup, to: &CtKey) -> Res<i32> {
    // (The frame's length where the IP packet's belongs: the MTU check is that much stricter.)
    let route = forward::lookup6(ctx, fib, &to.src, &to.dst, ports(to), ctx.len() as u16);
    forward::send(ctx, fib, route)
}

/// Offset of the IPv6 next header and hop limit in an Ethernet frame (read as a pair: a 1-byte
/// direct read does not verify, see `packet::ptr_at`).
const NH_HL_OFF: usize = ETH_HLEN + 6;

/// Whether the packet, translated to `to`, may go straight into the local pod behind the
/// host-side veth `pod_if` (`bpf_redirect_peer`): the node's route to `to.dst` leaves through
/// that veth with a resolved neighbour, the packet fits the veth's MTU (GSO-aware: the lookup
/// is given no length), and the hop limit allows forwarding. Anything else takes the node's
/// forwarding path, which answers with the ICMPv6 errors and neighbour resolution this skips.
/// The route (MACs) is left in `fib` for [`redirect_peer`].
#[inline(never)]
pub fn peer_route(ctx: &TcContext, fib: &mut bpf_fib_lookup, to: &CtKey, pod_if: u32) -> bool {
    if pod_if == 0 || !forward::pod_fast_path() {
        return false;
    }
    match packet::read::<[u8; 2]>(ctx, NH_HL_OFF) {
        Some(b) if forward::may_forward(b[1]) => {}
        _ => return false,
    }
    let route = forward::lookup6(ctx, fib, &to.src, &to.dst, ports(to), 0);
    forward::peer_of(route, fib, pod_if)
}

/// The Ethernet header and the IPv6 header up to the hop limit: what delivery into a pod
/// rewrites ([`redirect_peer`]).
#[repr(C)]
struct PeerHead {
    eth: [u8; ETH_HLEN],
    ip: [u8; 8],
}

impl AsMut<[u8; ETH_HLEN]> for PeerHead {
    fn as_mut(&mut self) -> &mut [u8; ETH_HLEN] {
        &mut self.eth
    }
}

/// Delivers the packet into the pod behind the veth of `fib` (from [`peer_route`]): the
/// route's MACs, the hop limit decremented as forwarding would, then `bpf_redirect_peer`
/// (tc ingress only), which skips the node's IP stack and the veth's egress.
#[inline(always)]
pub fn redirect_peer(ctx: &TcContext, fib: &bpf_fib_lookup) -> Res<i32> {
    let ip: [u8; 8] = packet::load_fast(ctx, ETH_HLEN)?;
    let mut head = PeerHead {
        eth: [0; ETH_HLEN],
        ip: [0; 8],
    };
    head.eth[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    head.ip[..7].copy_from_slice(&ip[..7]);
    head.ip[7] = ip[7].wrapping_sub(1);
    let len = core::mem::size_of::<PeerHead>();
    forward::send_frame(ctx, fib, Route::Peer, &mut head, len)
}
