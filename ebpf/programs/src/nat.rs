//! Rewriting a packet's 5-tuple (addresses and ports, checksums updated incrementally) and
//! sending a packet back out of the interface it arrived on, or routing it afresh.

use core::num::NonZeroUsize;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use network_types::ip::Ipv6Hdr;
use sixlane_common::{
    metrics::Reason,
    net::{ETH_HLEN, ETH_P_IPV6},
    services::CtKey,
};

use crate::{
    checksum,
    packet::{self, ptr_at},
    verdict::{Res, TC_ACT_REDIRECT, Verdict, fail},
};

/// Offsets of the IPv6 source and destination addresses in an Ethernet frame.
pub const SRC_OFF: usize = ETH_HLEN + 8;
pub const DST_OFF: usize = ETH_HLEN + 24;

/// The verdict on a packet rewritten and sent on by `r`: `reason` with `r`'s action, or, if a
/// step failed, dropped (it may be half-rewritten) as `SvcRewriteFailed`.
#[inline(always)]
pub fn rewritten(r: Res<i32>, reason: Reason) -> Verdict {
    match r {
        Ok(action) => Verdict::new(reason, action),
        Err(_) => Verdict::drop(Reason::SvcRewriteFailed),
    }
}

/// 16-byte equality without a `bcmp` call (the BPF target has no libc).
#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a0, a1) = split(a);
    let (b0, b1) = split(b);
    a0 == b0 && a1 == b1
}

#[inline(always)]
fn split(a: &[u8; 16]) -> (u64, u64) {
    let p = a.as_ptr().cast::<u64>();
    // SAFETY: `a` is 16 readable bytes; unaligned reads are explicit.
    unsafe { (p.read_unaligned(), p.add(1).read_unaligned()) }
}

#[inline(always)]
pub fn is_zero16(a: &[u8; 16]) -> bool {
    let (a0, a1) = split(a);
    a0 == 0 && a1 == 0
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
pub fn rewrite(ctx: &TcContext, l4_off: usize, has_l4: bool, from: &CtKey, to: &CtKey) -> Res<()> {
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

/// Swaps the Ethernet source and destination: the frame goes back where it came from.
#[inline(always)]
pub fn swap_macs(ctx: &TcContext) -> Res<()> {
    let macs: [u8; 12] = packet::load(ctx, 0)?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    packet::store(ctx, 0, &swapped)
}

/// Sends the (rewritten) packet back out of the interface it arrived on: the egress of a pod's
/// host-side veth delivers it to the pod, the uplink's egress to the uplink's neighbour.
#[inline(always)]
pub fn redirect_back(ctx: &TcContext) -> Res<i32> {
    swap_macs(ctx)?;
    redirect_out(ctx)
}

/// Sends the packet, whose Ethernet header is already set, out of the arrival interface.
#[inline(always)]
pub fn redirect_out(ctx: &TcContext) -> Res<i32> {
    // SAFETY: plain helper call; the result says whether the redirect was set up.
    let r = unsafe { bpf_redirect(packet::ifindex(ctx), 0) };
    if r == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(fail::HELPER)
    }
}

const AF_INET6: u8 = 10;

/// Routes the (translated) packet to `dst` afresh: a FIB lookup as if it arrived on this
/// interface, then a redirect to the next hop's interface, with its MACs (or through the
/// neighbour subsystem when the next hop is not resolved yet). For packets the kernel had
/// already routed towards a frontend.
#[inline(never)]
pub fn reroute(ctx: &TcContext, to: &CtKey) -> Res<i32> {
    let mut slot = core::mem::MaybeUninit::<bpf_fib_lookup>::uninit();
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid input (plain integers and arrays).
    let p = unsafe { crate::mem::zero_in(&mut slot) };
    p.family = AF_INET6;
    p.l4_protocol = to.proto;
    p.sport = to.sport;
    p.dport = to.dport;
    p.__bindgen_anon_1.tot_len = ctx.len() as u16;
    p.ifindex = packet::ifindex(ctx);
    p.__bindgen_anon_3.ipv6_src = words(&to.src);
    p.__bindgen_anon_4.ipv6_dst = words(&to.dst);
    let skb = ctx.as_ptr();
    // SAFETY: `p` is a properly sized, initialized lookup structure on our stack.
    let rc = unsafe {
        fib_lookup(
            skb,
            &mut *p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    let r = if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&p.dmac);
        macs[6..].copy_from_slice(&p.smac);
        packet::store(ctx, 0, &macs)?;
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(p.ifindex, 0) }
    } else if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        // SAFETY: plain helper call; NULL parameters: the neighbour subsystem resolves the
        // next hop of the packet's destination.
        unsafe { bpf_redirect_neigh(p.ifindex, core::ptr::null_mut(), 0, 0) }
    } else {
        return Err(fail::NO_ROUTE);
    };
    if r == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(fail::HELPER)
    }
}

/// Offset of the IPv6 next header and hop limit in an Ethernet frame (read as a pair: a 1-byte
/// direct read does not verify, see `packet::ptr_at`).
const NH_HL_OFF: usize = ETH_HLEN + 6;

#[inline(always)]
fn hop_limit(ctx: &TcContext) -> Option<u8> {
    packet::read::<[u8; 2]>(ctx, NH_HL_OFF).map(|b| b[1])
}

/// Whether the packet, translated to `to`, may go straight into the local pod behind the
/// host-side veth `ifindex` (`bpf_redirect_peer`): the node's route to `to.dst` leaves through
/// that veth with a resolved neighbour, the packet fits the veth's MTU (GSO-aware: the lookup
/// is given no length), and the hop limit allows forwarding. Anything else takes the node's
/// forwarding path, which answers with the ICMPv6 errors and neighbour resolution this skips.
/// The route (MACs) is left in `fib` for [`redirect_peer`].
#[inline(never)]
pub fn peer_route(ctx: &TcContext, fib: &mut bpf_fib_lookup, to: &CtKey, ifindex: u32) -> bool {
    if ifindex == 0 || !crate::conntrack::pod_fast_path() {
        return false;
    }
    match hop_limit(ctx) {
        Some(hl) if hl > 1 => {}
        _ => return false,
    }
    // An all-zero `bpf_fib_lookup` is a valid input (plain integers and arrays).
    crate::mem::zero(fib);
    fib.family = AF_INET6;
    fib.l4_protocol = to.proto;
    fib.sport = to.sport;
    fib.dport = to.dport;
    fib.ifindex = packet::ifindex(ctx);
    fib.__bindgen_anon_3.ipv6_src = words(&to.src);
    fib.__bindgen_anon_4.ipv6_dst = words(&to.dst);
    // SAFETY: `fib` is a valid, initialised params struct of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) && fib.ifindex == ifindex
}

/// Delivers the packet into the pod behind the veth of `fib` (from [`peer_route`]): the
/// route's MACs, the hop limit decremented as forwarding would, then `bpf_redirect_peer`
/// (tc ingress only), which skips the node's IP stack and the veth's egress.
#[inline(always)]
pub fn redirect_peer(ctx: &TcContext, fib: &bpf_fib_lookup) -> Res<i32> {
    // Ethernet header and the IPv6 header up to the hop limit, written with one store.
    let ip: [u8; 8] = packet::load_fast(ctx, ETH_HLEN)?;
    let mut head = [0u8; ETH_HLEN + 8];
    head[..6].copy_from_slice(&fib.dmac);
    head[6..12].copy_from_slice(&fib.smac);
    head[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    head[14..21].copy_from_slice(&ip[..7]);
    head[21] = ip[7].wrapping_sub(1);
    packet::store(ctx, 0, &head)?;
    // SAFETY: plain helper call.
    let r = unsafe { bpf_redirect_peer(fib.ifindex, 0) };
    if r == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(fail::HELPER)
    }
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = u32::from_ne_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]);
    }
    w
}
