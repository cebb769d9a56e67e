//! Forwarding for every stage: route lookups in the node's FIB, the hop-limit rule, the MTU check
//! of a local pod's link, and sending a packet on: to the next hop's MACs (`bpf_redirect`), through
//! the neighbour subsystem while the next hop is unresolved (`bpf_redirect_neigh`), straight into
//! a local pod (`bpf_redirect_peer`), or back out of the interface it arrived on.
//!
//! Lookups run before the packet is rewritten, so a route or MTU problem can still be answered
//! with an ICMP error about the original packet; the parameters and result stay in the caller's
//! scratch area (`fib`) until the packet is sent.
//!
//! Outbound translated packets reuse a route looked up on the same CPU within the last
//! [`ROUTE_TTL_NS`] ([`lookup4_cached`]): the lookup is a fifth of the NAT64 pod program's time,
//! and a flow sends many packets to one destination.
//!
//! Local pods are reached without the node's forwarding (the pod fast path, on unless the agent
//! switches it off): a reply delivered straight into the pod it is for. Service replies find
//! the pod by a route lookup ([`peer_of`]); NAT64 replies by the link the pod's session recorded
//! ([`pod_link`]), learned from the pod's own packets ([`learn_pod_link`]).

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
    macros::map,
    maps::LruHashMap,
    programs::TcContext,
};
use sixlane_common::{nat64::maps::PodLink, net::ETH_HLEN, services::config_flags};

use crate::{
    config, packet,
    verdict::{Res, TC_ACT_REDIRECT, fail},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Host-side pod veths of the node (pods per node are in the hundreds; an evicted link only
/// sends its pod's replies through a route lookup until its next session).
pub const POD_LINK_ENTRIES: u32 = 4096;

// Pinned (named for NAT64, whose sessions record the links): replies keep their shortcut
// across an agent restart.
#[map(name = "SL_N64_POD_LINKS")]
static POD_LINKS: LruHashMap<u32, PodLink> = LruHashMap::pinned(POD_LINK_ENTRIES, 0);

/// Where a packet goes (details in the caller's `fib`).
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

/// The transport fields a route lookup may use (policy rules, multipath hashing): protocol and
/// ports as they sit in the packet. [`Ports::NONE`] leaves them out.
#[derive(Clone, Copy)]
pub struct Ports {
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Ports {
    pub const NONE: Ports = Ports {
        proto: 0,
        sport: 0,
        dport: 0,
    };
}

/// Whether a router may forward a packet that arrived with hop limit (or TTL) `hl`: it must
/// decrement it and not reach 0.
#[inline(always)]
pub const fn may_forward(hl: u8) -> bool {
    hl > 1
}

/// The egress device of the last lookup.
#[inline(always)]
pub fn oif(fib: &bpf_fib_lookup) -> u32 {
    fib.ifindex
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

/// Starts a lookup as if the packet arrived on this program's interface.
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

/// Route results kept per CPU (in a scratch area), indexed by destination and ingress device.
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
    /// The caller's clock (`bpf_ktime_get_coarse_ns`) at the lookup; 0 = empty.
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

/// [`lookup4`] for a translated packet of `tot_len` bytes (not 0) at time `t`
/// (`bpf_ktime_get_coarse_ns`), answered from this CPU's route slots while a lookup for the
/// same source, destination and ingress device that fitted a packet at least as large is
/// younger than [`ROUTE_TTL_NS`]. Only resolved routes are kept: unresolved neighbours, errors
/// and too-big answers are looked up every time.
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
    ports: Ports,
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
    if ports.proto != 0 {
        fib.l4_protocol = ports.proto;
        fib.sport = ports.sport;
        fib.dport = ports.dport;
    }
    run(ctx, fib)
}

/// Whether local pods are reached straight through their veths (the default; see
/// `config_flags::NO_POD_FAST_PATH`).
#[inline(always)]
pub fn pod_fast_path() -> bool {
    config::get().is_none_or(|c| c.flags & config_flags::NO_POD_FAST_PATH == 0)
}

/// Whether `route` leads out of `pod_if` (not 0), the host side of a local pod's veth: the
/// packet can go straight into the pod instead ([`Route::Peer`]) when [`pod_fast_path`] is on.
#[inline(always)]
pub fn peer_of(route: Route, fib: &bpf_fib_lookup, pod_if: u32) -> bool {
    route == Route::Direct && pod_if != 0 && oif(fib) == pod_if
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

/// The route of a reply into the local pod behind host-side veth `pod_if` (recorded by the
/// pod's session): the pod's learned link, if the veth still exists and a packet of `len` bytes
/// (IPv6 total length, 0 for a GSO super-packet) fits its MTU. `None`: no such link (unknown,
/// evicted, veth gone, fast path switched off); the caller looks the route up instead. A
/// session is its pod's: its replies go where its packets came from, whatever the node's routes
/// say meanwhile.
#[inline(always)]
pub fn pod_link(ctx: &TcContext, fib: &mut bpf_fib_lookup, pod_if: u32, len: u16) -> Option<Route> {
    if pod_if == 0 || !pod_fast_path() {
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

/// A redirect helper's answer as the tc action to return.
#[inline(always)]
fn redirected(r: i64) -> Res<i32> {
    if r == i64::from(TC_ACT_REDIRECT) {
        Ok(TC_ACT_REDIRECT)
    } else {
        Err(fail::HELPER)
    }
}

/// `bpf_redirect` to the route's device, or `bpf_redirect_peer` into a local pod.
#[inline(always)]
fn redirect(fib: &bpf_fib_lookup, route: Route) -> Res<i32> {
    // SAFETY: plain helper calls.
    redirected(unsafe {
        if route == Route::Peer {
            bpf_redirect_peer(fib.ifindex, 0)
        } else {
            bpf_redirect(fib.ifindex, 0)
        }
    })
}

/// Writes the first `len` bytes of `frame` (an Ethernet header with its EtherType set, then
/// whatever else of the packet's headers changed) over the start of the packet, MACs from the
/// route included, and sends the packet along the route: one store for all of it.
#[inline(always)]
pub fn send_frame<F>(
    ctx: &TcContext,
    fib: &bpf_fib_lookup,
    route: Route,
    frame: &mut F,
    len: usize,
) -> Res<i32>
where
    F: AsMut<[u8; ETH_HLEN]>,
{
    if route == Route::Direct || route == Route::Peer {
        let eth = frame.as_mut();
        eth[..6].copy_from_slice(&fib.dmac);
        eth[6..12].copy_from_slice(&fib.smac);
        packet::store_first(ctx, 0, &*frame, len)?;
        return redirect(fib, route);
    }
    packet::store_first(ctx, 0, &*frame, len)?;
    send(ctx, fib, route)
}

/// Sends the rewritten packet along the last lookup's route: the tc action to return.
#[inline(always)]
pub fn send(ctx: &TcContext, fib: &bpf_fib_lookup, route: Route) -> Res<i32> {
    match route {
        Route::Direct | Route::Peer => {
            let mut macs = [0u8; 12];
            macs[..6].copy_from_slice(&fib.dmac);
            macs[6..].copy_from_slice(&fib.smac);
            packet::store(ctx, 0, &macs)?;
            redirect(fib, route)
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
            redirected(unsafe {
                bpf_redirect_neigh(
                    fib.ifindex,
                    &mut *nh,
                    core::mem::size_of::<bpf_redir_neigh>() as i32,
                    0,
                )
            })
        }
        Route::TooBig(_) | Route::None => Err(fail::NO_ROUTE),
    }
}

/// Sends the (rewritten) packet back out of the interface it arrived on, its Ethernet
/// addresses swapped: the egress of a pod's host-side veth delivers it to the pod, the uplink's
/// egress to the uplink's neighbour.
#[inline(always)]
pub fn redirect_back(ctx: &TcContext) -> Res<i32> {
    let macs: [u8; 12] = packet::load(ctx, 0)?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    packet::store(ctx, 0, &swapped)?;
    redirect_out(ctx)
}

/// Sends the packet, whose Ethernet header is already set, out of the arrival interface.
#[inline(always)]
pub fn redirect_out(ctx: &TcContext) -> Res<i32> {
    // SAFETY: plain helper call.
    redirected(unsafe { bpf_redirect(packet::ifindex(ctx), 0) })
}
