//! Unsolicited IPv4 SYNs and simultaneous open (RFC 6146 §3.5.2.2), under
//! `nat64.unsolicitedTcp: hold`: an IPv4 SYN to the dynamic range without a session is recorded
//! in `SL_N64_HELD` (with the start of the packet, for its ICMP error) and dropped; a pod's SYN
//! for the same tuple within 6 s forgets it and the connection opens from both sides. A program
//! cannot send anything later: the agent answers held SYNs older than 6 s with ICMP Port
//! Unreachable and removes them. Under `drop` an unsolicited SYN is dropped silently. Either
//! way the node's stack never sees a SYN to a NAT64 port, so it never answers one.

// Map helpers take keys and values by `Borrow`; passing the scratch-resident ones by value
// would copy them onto the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{bindings::BPF_NOEXIST, programs::TcContext};
use sixlane_common::{
    metrics::Reason,
    nat64::maps::{Config, UNSOLICITED_HOLD},
    net::{ETH_HLEN, IPV4_HLEN, proto, tcp_flags},
};

use super::{area::Area, maps::HELD, state};
use crate::{packet, verdict::Verdict};

/// Flags of a connection's first SYN (no ACK: never an answer; no RST).
const OPENING: u8 = tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST;

/// An IPv4 packet to a NAT64 port without a session it may use or open (`s.inflow`, TCP at
/// `l4`): held if it is a SYN to the dynamic range under `hold`, else dropped.
#[inline(never)]
pub fn unsolicited(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    let f = &s.inflow;
    // IPv4 options would make the quoted header longer than the stored one: not held.
    let holdable = cfg.unsolicited_tcp == UNSOLICITED_HOLD
        && f.proto == proto::TCP
        && !f.static_only
        && f.tcp_flags & OPENING == tcp_flags::SYN
        && l4 as usize == ETH_HLEN + IPV4_HLEN;
    if !holdable {
        return Verdict::drop(Reason::Nat64Unsolicited);
    }
    let k = &mut s.held_key;
    k.t_addr = f.t_addr;
    k.t_port = f.t_port;
    k.z = f.z;
    k.z_port = f.z_port;
    // A retransmission keeps the first SYN's time: the 6 s run from the first.
    if HELD.get_ptr(&s.held_key).is_some() {
        return Verdict::drop(Reason::Nat64SynHeld);
    }
    if packet::load_into_fast(ctx, ETH_HLEN, &mut s.held.quote).is_err() {
        return Verdict::drop(Reason::Nat64Unsolicited);
    }
    s.held.seen_ns = state::now();
    s.held._pad = 0;
    // A plain hash map: full, the insert fails instead of evicting a SYN still waiting.
    match HELD.insert(&s.held_key, &s.held, u64::from(BPF_NOEXIST)) {
        Ok(()) => Verdict::drop(Reason::Nat64SynHeld),
        Err(_) => Verdict::drop(Reason::Nat64SynHoldFull),
    }
}

/// After a pod's packet was translated (`v`): a SYN that meets a held IPv4 SYN of its tuple
/// (the binding's (T, t) and the peer) completes a simultaneous open; the held SYN is removed
/// (never answered) and the packet counted as such.
#[inline(never)]
pub fn outbound(cfg: &Config, s: &mut Area, v: Verdict) -> Verdict {
    let f = &s.flow;
    if cfg.unsolicited_tcp != UNSOLICITED_HOLD
        || f.proto != proto::TCP
        || f.tcp_flags & OPENING != tcp_flags::SYN
        || v.reason_code() != Reason::Nat64Out as u32
    {
        return v;
    }
    let k = &mut s.held_key;
    k.t_addr = s.map.t_addr;
    k.t_port = s.map.t_port;
    k.z = f.y;
    k.z_port = f.y_port;
    if HELD.remove(&s.held_key).is_ok() {
        return Verdict::new(Reason::Nat64SimultaneousOpen, v.action());
    }
    v
}
