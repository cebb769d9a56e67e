//! Stateful NAT64 (RFC 6146) with RFC 7915 header translation and RFC 6052 addressing, in the
//! node's own tc programs: no netfilter, no external translator.
//!
//! - [`from_pod`] (pod veth ingress): IPv6 packets to Pref64::/n become IPv4 packets from the
//!   node's pool address and leave through the IPv4 uplink (FIB lookup, redirect).
//! - [`from_uplink`] (uplink ingress): IPv4 replies (and ICMP errors) for NAT64 sessions become
//!   IPv6 and go to the pod; IPv6 packets to the prefix from pods of nodes without IPv4 (routed
//!   here by their nodes) are translated like [`from_pod`]'s.
//!
//! The rules (tables, header fields, address embedding) are in `sixlane_common::nat64`; this
//! module applies them to packets and keeps the state:
//!
//! - [`v6_to_v4`] and [`v4_to_v6`]: the two directions of translation;
//! - [`hairpin`]: packets to the translator's own pool addresses, turned back to the IPv6 side;
//! - [`icmp_error`]: ICMP errors translated with the packet they quote;
//! - [`reply`]: ICMP errors the translator originates;
//! - [`hold`]: unsolicited IPv4 SYNs held for a simultaneous open;
//! - [`mss`]: TCP MSS clamping;
//! - [`sane`]: headers that disagree with themselves, refused;
//! - [`state`] and [`maps`]: bindings and sessions;
//! - [`area`]: the per-CPU scratch area.

mod area;
mod hairpin;
mod hold;
mod icmp_error;
mod maps;
mod mss;
mod reply;
mod sane;
mod state;
mod v4_to_v6;
mod v6_to_v4;

use aya_ebpf::programs::TcContext;
use sixlane_common::{
    metrics::Reason,
    nat64::maps::{CFG_ENABLED, Config},
    net::{ETH_HLEN, IPV6_DST_OFF},
};

use crate::{packet, parse::L3, verdict::Verdict};

/// What a byte range too long to checksum in the datapath (`checksum::sum_range`) is counted
/// as: a UDP datagram over IPv4 with a zero checksum longer than `v4_to_v6::CHUNKS_UDP` chunks.
/// ICMP errors, originated or translated, are cut to what their chunks cover first (576 bytes
/// of IPv4, 1280 of IPv6), so none is refused for its size.
const TOO_LONG: Reason = Reason::Nat64UdpChecksum;

#[inline(always)]
fn config() -> Option<&'static Config> {
    let c = maps::CONFIG.get(0)?;
    if c.flags & CFG_ENABLED == 0 || c.n_addrs == 0 {
        return None;
    }
    Some(c)
}

/// IPv6 to the prefix → translated; `None` with NAT64 off. `pod_if`: the pod's veth the packet
/// arrives on (0: not from a local pod). The prefix is not checked again here: the entry point
/// tail-called this program because [`claims_from_pod`] or [`claims_from_uplink`] found the
/// destination in it, and `v6_to_v4::run` extracts the IPv4 address under the prefix anyway.
#[inline(always)]
fn v6_to_prefix(ctx: &TcContext, l3: &L3, pod_if: u32) -> Option<Verdict> {
    let cfg = config()?;
    Some(v6_to_v4::run(ctx, cfg, l3, pod_if))
}

/// Whether a packet a pod sends is NAT64's: IPv6 to the prefix, with NAT64 on. Cheap (one
/// array lookup and a prefix compare): the entry point decides with it whether to tail-call
/// the NAT64 program.
#[inline(always)]
pub fn claims_from_pod(ctx: &TcContext, l3: &L3) -> bool {
    l3.v6 && config().is_some_and(|cfg| to_prefix(ctx, cfg))
}

/// Whether an uplink packet may be NAT64's: IPv4 (replies to NAT64 sessions; the service stage
/// ignores IPv4) or IPv6 to the prefix (route-mode nodes), with NAT64 on.
#[inline(always)]
pub fn claims_from_uplink(ctx: &TcContext, l3: &L3) -> bool {
    config().is_some_and(|cfg| !l3.v6 || to_prefix(ctx, cfg))
}

/// Whether the IPv6 destination is in the prefix. Read straight from the packet (the parser
/// has checked the IPv6 header is in the linear data): the entry point asks for every IPv6
/// packet a pod sends.
#[inline(always)]
fn to_prefix(ctx: &TcContext, cfg: &Config) -> bool {
    packet::read::<[u8; 16]>(ctx, ETH_HLEN + IPV6_DST_OFF)
        .is_some_and(|dst| cfg.prefix().matches(&dst))
}

/// NAT64 stage for packets a pod sends: IPv6 to the prefix is translated to IPv4.
#[inline(always)]
pub fn from_pod(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    if !l3.v6 {
        return None;
    }
    v6_to_prefix(ctx, l3, packet::ifindex(ctx))
}

/// NAT64 stage for packets arriving on the uplink: IPv4 for NAT64 sessions is translated to
/// IPv6; IPv6 to the prefix (from pods of nodes without IPv4) is translated to IPv4.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    if l3.v6 {
        return v6_to_prefix(ctx, l3, 0);
    }
    let cfg = config()?;
    let v = v4_to_v6::run(ctx, cfg, l3);
    v.is_ours().then_some(v)
}

/// The hairpin stage: a packet one of the NAT64 programs handed over (`area::hairpin`).
#[inline(always)]
pub fn hairpin(ctx: &TcContext) -> Verdict {
    let (Some(cfg), Some(s)) = (config(), area::get()) else {
        return Verdict::drop(Reason::Nat64Error);
    };
    hairpin::run(ctx, cfg, s)
}
