//! Forwarding a translated packet: FIB lookup in the node's routing table, then a redirect to
//! the egress device (with the neighbour's MAC, or through `bpf_redirect_neigh` while the
//! neighbour is unresolved). Lookups run before the packet is rewritten, so a route or MTU
//! problem can still be answered with an ICMP error about the original packet. The parameters
//! and result stay in the scratch area until [`send`].
//!
//! Outbound translated packets reuse a route looked up on the same CPU within the last
//! [`ROUTE_TTL_NS`] ([`lookup4_cached`]): the lookup is a fifth of the pod program's time, and a
//! flow sends many packets to one destination.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_check_mtu_ret::{BPF_MTU_CHK_RET_FRAG_NEEDED, BPF_MTU_CHK_RET_SUCCESS},
        bpf_fib_lookup, bpf_redir_neigh,
    },
    helpers::{
        bpf_check_mtu, bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh,
        bpf_redirect_peer,
    },
    programs::TcContext,
};
use sixlane_common::{metrics::Reason, nat64::maps::PodLink};

use super::{
    maps::POD_LINKS,
    scratch::{PORTS_LEN, Scratch},
};
use crate::{
    packet,
    verdict::{Res, TC_ACT_REDIRECT},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where a packet goes (details in the scratch area's `fib`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Neighbour known: MACs and egress device in `fib`.
    Direct,
    /// Like `Direct`, and the device is the host side of a local pod's veth: delivered into
    /// the pod with `bpf_redirect_peer` (tc ingress only), skipping the veth's egress.
    Peer,
    /// Neighbour unresolved: `bpf_redirect_neigh` to the next hop in `fib`.
    Neigh,
    /// Exceeds the route's MTU (the value given).
    TooBig(u32),
    /// No usable route.
    None,
}

impl Route {
    #[inline(always)]
    pub fn usable(self) -> bool {
        matches!(self, Route::Direct | Route::Peer | Route::Neigh)
    }
}

/// The egress device of the last lookup.
#[inline(always)]
pub fn oif(s: &Scratch) -> u32 {
    s.fib.ifindex
}

#[inline(always)]
fn run(ctx: &TcContext, fib: &mut bpf_fib_lookup) -> Route {
    // SAFETY: `fib` is a valid, initialised params struct of the size passed.
    let rc = unsafe {
        fib_lookup(
            packet::skb(ctx).cast(),
            fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        Route::Direct
    } else if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        Route::Neigh
    } else if rc == i64::from(BPF_FIB_LKUP_RET_FRAG_NEEDED) {
        // SAFETY: the kernel wrote mtu_result for this return code.
        Route::TooBig(u32::from(unsafe { fib.__bindgen_anon_1.mtu_result }))
    } else {
        Route::None
    }
}

#[inline(always)]
fn reset(ctx: &TcContext, fib: &mut bpf_fib_lookup, family: u8, tot_len: u16) {
    // All-zero is a valid value of this plain-old-data bindgen struct.
    crate::mem::zero(fib);
    fib.family = family;
    fib.ifindex = packet::ifindex(ctx);
    fib.__bindgen_anon_1.tot_len = tot_len;
}

/// Route for an IPv4 packet `src` → `dst` of `tot_len` bytes (0 = skip the MTU check).
#[inline(always)]
pub fn lookup4(
    ctx: &TcContext,
    fib: &mut bpf_fib_lookup,
    src: [u8; 4],
    dst: [u8; 4],
    tot_len: u16,
) -> Route {
    reset(ctx, fib, AF_INET, tot_len);
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    run(ctx, fib)
}

/// Route results kept per CPU (in the scratch area), indexed by destination and ingress device.
pub const ROUTE_SLOTS: usize = 256;
/// How long a looked-up route is reused: route, neighbour and MTU changes reach established
/// flows within this time (a new lookup runs for any other destination, source, ingress device
/// or a larger packet).
pub const ROUTE_TTL_NS: u64 = 100_000_000;

/// One reusable IPv4 route: a `BPF_FIB_LKUP_RET_SUCCESS` result for (`src`, `dst`, `iif`) and
/// the largest packet it was checked for (`ok_len`, IPv4 total length).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RouteSlot {
    dst: [u8; 4],
    src: [u8; 4],
    iif: u32,
    oif: u32,
    dmac: [u8; 6],
    smac: [u8; 6],
    ok_len: u16,
    _pad: u16,
    /// `state::now()` of the lookup; 0 = empty.
    stamp: u64,
}

#[inline(always)]
fn route_slot(dst: [u8; 4], iif: u32) -> usize {
    // Pods of a node sending to one destination take different slots (the ingress device is
    // part of the route's key). Fibonacci hashing: the product's high bits mix every input bit.
    let h = u32::from_ne_bytes(dst) ^ iif.wrapping_mul(0x85eb_ca6b);
    (h.wrapping_mul(0x9e37_79b1) >> (32 - ROUTE_SLOTS.trailing_zeros())) as usize
        & (ROUTE_SLOTS - 1)
}

/// [`lookup4`] for a translated packet of `tot_len` bytes (not 0) at time `t` (`state::now()`),
/// answered from this CPU's route slots while a lookup for the same source, destination and
/// ingress device that fitted a packet at least as large is younger than [`ROUTE_TTL_NS`].
/// Only resolved routes are kept: unresolved neighbours, errors and too-big answers are looked
/// up every time.
#[inline(always)]
pub fn lookup4_cached(
    ctx: &TcContext,
    fib: &mut bpf_fib_lookup,
    slots: &mut [RouteSlot; ROUTE_SLOTS],
    src: [u8; 4],
    dst: [u8; 4],
    tot_len: u16,
    t: u64,
) -> Route {
    let iif = packet::ifindex(ctx);
    let slot = &mut slots[route_slot(dst, iif)];
    let same = slot.dst == dst
        && slot.src == src
        && slot.iif == iif
        && slot.stamp != 0
        && t.wrapping_sub(slot.stamp) < ROUTE_TTL_NS;
    if same && tot_len <= slot.ok_len {
        fib.ifindex = slot.oif;
        fib.dmac = slot.dmac;
        fib.smac = slot.smac;
        return Route::Direct;
    }
    let r = lookup4(ctx, fib, src, dst, tot_len);
    if r == Route::Direct {
        // A larger packet that fits the same route widens the slot; anything else starts it.
        let ok_len = if same && slot.oif == fib.ifindex && slot.dmac == fib.dmac {
            tot_len.max(slot.ok_len)
        } else {
            tot_len
        };
        slot.dst = dst;
        slot.src = src;
        slot.iif = iif;
        slot.oif = fib.ifindex;
        slot.dmac = fib.dmac;
        slot.smac = fib.smac;
        slot.ok_len = ok_len;
        slot.stamp = t;
    }
    r
}

/// Route for an IPv6 packet `src` → `dst` of `tot_len` bytes (0 = skip the MTU check).
#[inline(always)]
pub fn lookup6(
    ctx: &TcContext,
    fib: &mut bpf_fib_lookup,
    src: &[u8; 16],
    dst: &[u8; 16],
    tot_len: u16,
) -> Route {
    reset(ctx, fib, AF_INET6, tot_len);
    // SAFETY: both union members are 16 bytes; copied memory to memory.
    unsafe {
        core::ptr::copy_nonoverlapping(
            src.as_ptr(),
            fib.__bindgen_anon_3.ipv6_src.as_mut_ptr().cast::<u8>(),
            16,
        );
        core::ptr::copy_nonoverlapping(
            dst.as_ptr(),
            fib.__bindgen_anon_4.ipv6_dst.as_mut_ptr().cast::<u8>(),
            16,
        );
    }
    run(ctx, fib)
}

/// Records the Ethernet addresses of the pod behind host-side veth `pod_if` from a packet it
/// sent (called when one of its sessions is created or refreshed: at most once per session and
/// second).
#[inline(always)]
pub fn learn_pod_link(ctx: &TcContext, pod_if: u32) {
    let Ok(eth) = packet::load_fast::<[u8; 12]>(ctx, 0) else {
        return;
    };
    // The pod's packet: destination = the host side, source = the pod. Group addresses are
    // nobody's interface.
    if eth[0] & 1 != 0 || eth[6] & 1 != 0 {
        return;
    }
    let mut link = PodLink::default();
    link.host_mac.copy_from_slice(&eth[..6]);
    link.pod_mac.copy_from_slice(&eth[6..12]);
    if let Some(old) = POD_LINKS.get_ptr(pod_if)
        // SAFETY: pointer into the map value, read once.
        && unsafe { *old } == link
    {
        return;
    }
    let _ = POD_LINKS.insert(pod_if, link, 0);
}

/// The route of a reply into the local pod whose session recorded host-side veth `pod_if`: the
/// pod's learned link, if the veth still exists and a packet of `len` bytes (IPv6 total length,
/// 0 for a GSO super-packet) fits its MTU. `None`: no such link (unknown, evicted, veth gone,
/// fast path switched off); the caller looks the route up instead. A session is its pod's:
/// its replies go where its packets came from, whatever the node's routes say meanwhile.
#[inline(always)]
pub fn pod_link(ctx: &TcContext, fib: &mut bpf_fib_lookup, pod_if: u32, len: u16) -> Option<Route> {
    if pod_if == 0 || !crate::conntrack::pod_fast_path() {
        return None;
    }
    let link = POD_LINKS.get_ptr(pod_if)?;
    // SAFETY: pointer into the map value, copied out once.
    let link = unsafe { *link };
    let mut mtu = u32::from(len);
    // SAFETY: `mtu` is a valid in/out pointer; the helper only reads the skb. It fails when
    // the device is gone.
    let rc = unsafe { bpf_check_mtu(packet::skb(ctx).cast(), pod_if, &mut mtu, 0, 0) };
    if rc == i64::from(BPF_MTU_CHK_RET_FRAG_NEEDED) {
        return Some(Route::TooBig(mtu));
    }
    if rc != i64::from(BPF_MTU_CHK_RET_SUCCESS) {
        return None;
    }
    fib.ifindex = pod_if;
    fib.dmac = link.pod_mac;
    fib.smac = link.host_mac;
    Some(Route::Peer)
}

/// Writes `frame` (Ethernet header with its EtherType set, the IP header, and with `ports` the
/// TCP/UDP ports that follow it) over the start of the packet, MACs from the route included,
/// and sends the packet along the route: one store instead of four on the common path.
#[inline(always)]
pub fn send_frame<F>(
    ctx: &TcContext,
    fib: &bpf_fib_lookup,
    route: Route,
    frame: &mut F,
    ports: bool,
) -> Res<i32>
where
    F: AsMut<[u8; 14]>,
{
    // Every frame ends with the ports (`scratch::PORTS_LEN`).
    let len = core::mem::size_of::<F>() - if ports { 0 } else { PORTS_LEN };
    if route == Route::Direct || route == Route::Peer {
        let eth = frame.as_mut();
        eth[..6].copy_from_slice(&fib.dmac);
        eth[6..12].copy_from_slice(&fib.smac);
        packet::store_first(ctx, 0, &*frame, len)?;
        // SAFETY: plain helper calls.
        let r = unsafe {
            if route == Route::Peer {
                bpf_redirect_peer(fib.ifindex, 0)
            } else {
                bpf_redirect(fib.ifindex, 0)
            }
        };
        return if r == i64::from(TC_ACT_REDIRECT) {
            Ok(TC_ACT_REDIRECT)
        } else {
            Err(Reason::Nat64Error)
        };
    }
    packet::store_first(ctx, 0, &*frame, len)?;
    send(ctx, fib, route)
}

/// Sends the rewritten packet along the last lookup's route: the tc action to return.
#[inline(always)]
pub fn send(ctx: &TcContext, fib: &bpf_fib_lookup, route: Route) -> Res<i32> {
    let r = match route {
        Route::Direct | Route::Peer => {
            packet::store(ctx, 0, &fib.dmac)?;
            packet::store(ctx, 6, &fib.smac)?;
            // SAFETY: plain helper calls.
            unsafe {
                if route == Route::Peer {
                    bpf_redirect_peer(fib.ifindex, 0)
                } else {
                    bpf_redirect(fib.ifindex, 0)
                }
            }
        }
        Route::Neigh => {
            let mut slot = core::mem::MaybeUninit::<bpf_redir_neigh>::uninit();
            // SAFETY: zeroed POD, then the next hop the lookup left in the dst field.
            let nh = unsafe { crate::mem::zero_in(&mut slot) };
            // SAFETY: reading the union member of the family looked up.
            unsafe {
                if fib.family == AF_INET6 {
                    nh.nh_family = u32::from(AF_INET6);
                    nh.__bindgen_anon_1.ipv6_nh = fib.__bindgen_anon_4.ipv6_dst;
                } else {
                    nh.nh_family = u32::from(AF_INET);
                    nh.__bindgen_anon_1.ipv4_nh = fib.__bindgen_anon_4.ipv4_dst;
                }
            }
            // SAFETY: `nh` is a valid params struct of the size passed.
            unsafe {
                bpf_redirect_neigh(
                    fib.ifindex,
                    &mut *nh,
                    core::mem::size_of::<bpf_redir_neigh>() as i32,
                    0,
                )
            }
        }
        Route::TooBig(_) | Route::None => return Err(Reason::Nat64NoRoute),
    };
    if r == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(Reason::Nat64Error)
    }
}
