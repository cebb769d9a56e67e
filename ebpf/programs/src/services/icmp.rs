//! ICMPv6 for services:
//!
//! - echo requests to a frontend address are answered by the node (a ClusterIP answers ping);
//! - errors (destination unreachable, packet too big, time exceeded, parameter problem) about a
//!   translated flow are translated too: the outer addresses and the quoted packet, so the
//!   sender's socket recognises its flow (Path MTU discovery through services);
//! - a new flow to a service without endpoints gets destination unreachable / port
//!   unreachable from the frontend address, as kube-proxy's reject rules send.

use core::num::NonZeroUsize;

use aya_ebpf::{
    bindings::{BPF_F_RECOMPUTE_CSUM, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use network_types::ip::Ipv6Hdr;
use sixlane_common::{
    metrics::Reason,
    nat64::csum,
    net::{
        ETH_HLEN, ETH_P_IPV6, HOP_LIMIT, ICMP_HLEN, IPV6_DST_OFF, IPV6_HLEN, IPV6_MIN_MTU,
        IPV6_SRC_OFF,
        icmp6::{
            DEST_UNREACH, ECHO_REPLY, ECHO_REQUEST, PACKET_TOO_BIG, PARAM_PROBLEM, PORT_UNREACH,
            TIME_EXCEEDED,
        },
        proto,
    },
    services::{CtKey, svc_flags},
};

use super::{
    area, conntrack as ct,
    frontend::{Hook, service},
    rewrite::{self, DST_OFF, SRC_OFF, rewritten},
};
use crate::{
    checksum::{self, CHUNK, fold},
    forward, icmp6,
    mem::eq16,
    packet::{self, ptr_at},
    parse::L3,
    verdict::{Res, TC_ACT_UNSPEC, Verdict, fail},
};

/// An ICMPv6 error must fit the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
const MIN_MTU: usize = IPV6_MIN_MTU as usize;
const MAX_QUOTE: usize = MIN_MTU - IPV6_HLEN - ICMP_HLEN;

/// ICMPv6 part of a hook's service stage.
#[inline(always)]
pub fn stage(ctx: &TcContext, l3: &L3, hook: Hook) -> Option<Verdict> {
    // The whole fixed header, or the packet is not ours to answer or translate.
    let h: [u8; ICMP_HLEN] = packet::load(ctx, l3.l4_off).ok()?;
    match h[0] {
        ECHO_REQUEST => echo(ctx, l3, hook, h[1]),
        DEST_UNREACH | PACKET_TOO_BIG | TIME_EXCEEDED | PARAM_PROBLEM => error(ctx, l3, hook),
        _ => None,
    }
}

/// Echo request to a frontend address: reply from it, back out of the arrival interface.
#[inline(always)]
fn echo(ctx: &TcContext, l3: &L3, hook: Hook, code: u8) -> Option<Verdict> {
    let scope = match hook {
        Hook::FromPod => sixlane_common::services::scope::INTERNAL,
        Hook::FromUplink => sixlane_common::services::scope::EXTERNAL,
        Hook::ToPod | Hook::ToUplink => return None,
    };
    let (src, dst) = rewrite::addrs(ctx)?;
    let svc = service(&dst, 0, proto::ICMPV6, scope)?;
    if svc.flags & svc_flags::ECHO == 0 {
        return None;
    }
    Some(rewritten(
        echo_reply(ctx, l3, &src, &dst, code),
        Reason::SvcEchoReply,
    ))
}

#[inline(always)]
fn echo_reply(ctx: &TcContext, l3: &L3, src: &[u8; 16], dst: &[u8; 16], code: u8) -> Res<i32> {
    // Swapping the addresses leaves the pseudo-header sum as it was; only the type changes.
    checksum::l4_replace(
        ctx,
        l3.l4_off + 2,
        u64::from(u16::from_ne_bytes([ECHO_REQUEST, code])),
        u64::from(u16::from_ne_bytes([ECHO_REPLY, code])),
        2,
    )?;
    packet::store(ctx, l3.l4_off, &ECHO_REPLY)?;
    packet::store(ctx, SRC_OFF, dst)?;
    packet::store(ctx, DST_OFF, src)?;
    packet::store_flags(
        ctx,
        ETH_HLEN + 7,
        &HOP_LIMIT,
        u64::from(BPF_F_RECOMPUTE_CSUM),
    )?;
    forward::redirect_back(ctx)
}

/// An ICMPv6 error quoting a packet of a tracked flow.
///
/// The quoted packet travelled the other way, so the error matches the conntrack entry of the
/// reversed quoted tuple: it is translated the way a packet matching that entry would be
/// (destination, and source when the error comes from the flow's peer itself), and the quote
/// becomes the reverse of the translated tuple, which is what the recipient sent.
#[inline(always)]
fn error(ctx: &TcContext, l3: &L3, hook: Hook) -> Option<Verdict> {
    let io = l3.l4_off + ICMP_HLEN;
    // Version and next header of the quoted IPv6 header (extension headers inside a quote are
    // not followed).
    let vh: [u8; 8] = packet::load(ctx, io).ok()?;
    let l4 = vh[6];
    if vh[0] >> 4 != 6 || !(l4 == proto::TCP || l4 == proto::UDP || l4 == proto::SCTP) {
        return None;
    }
    let p: [u8; 4] = packet::load(ctx, io + IPV6_HLEN).ok()?;
    let s = area::get()?;
    let key = &mut s.key;
    key.src = packet::load(ctx, io + IPV6_DST_OFF).ok()?;
    key.dst = packet::load(ctx, io + IPV6_SRC_OFF).ok()?;
    key.sport = u16::from_ne_bytes([p[2], p[3]]);
    key.dport = u16::from_ne_bytes([p[0], p[1]]);
    key.proto = l4;
    key._pad = 0;
    key._pad2 = 0;
    let e = ct::lookup(key, ct::now())?;
    // SAFETY: live map value pointer.
    let entry = unsafe { &*e };
    if entry.flags & hook.bit() == 0 {
        return None;
    }
    s.to = entry.translated(l4);
    let r = translate_error(ctx, l3.l4_off, &s.key, &s.to);
    Some(rewritten(r.map(|()| TC_ACT_UNSPEC), Reason::SvcIcmpError))
}

#[inline(never)]
fn translate_error(ctx: &TcContext, l4_off: usize, key: &CtKey, to: &CtKey) -> Res<()> {
    let outer_csum = l4_off + 2;
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN).ok_or(fail::MALFORMED)?;
    // SAFETY: bounds-checked by ptr_at.
    let (dst_is_peer, src_is_peer) = unsafe {
        (
            eq16(&(*ip).dst_addr, &key.dst),
            eq16(&(*ip).src_addr, &key.src),
        )
    };
    if dst_is_peer && !eq16(&key.dst, &to.dst) {
        checksum::set_addr6(
            ctx,
            DST_OFF,
            &key.dst,
            &to.dst,
            NonZeroUsize::new(outer_csum),
            proto::ICMPV6,
        )?;
    }
    if src_is_peer && !eq16(&key.src, &to.src) {
        checksum::set_addr6(
            ctx,
            SRC_OFF,
            &key.src,
            &to.src,
            NonZeroUsize::new(outer_csum),
            proto::ICMPV6,
        )?;
    }

    // The quote is reverse(key) and becomes reverse(to); `d` is the change of its sum.
    let io = l4_off + ICMP_HLEN;
    let ports = io + IPV6_HLEN;
    let mut d = checksum::diff(&key.dst, &to.dst, 0)?;
    d = checksum::diff(&key.src, &to.src, d)?;
    let from_ports = port_pair(key.dport, key.sport);
    let to_ports = port_pair(to.dport, to.sport);
    d = checksum::diff(&from_ports, &to_ports, d)?;
    packet::store(ctx, io + IPV6_SRC_OFF, &to.dst)?;
    packet::store(ctx, io + IPV6_DST_OFF, &to.src)?;
    packet::store(ctx, ports, &to_ports)?;

    // With the quoted checksum present it absorbs the change (it covers the quoted addresses
    // as pseudo-header and the ports), so the sum over the ICMPv6 message is unchanged. A
    // quote cut short of its checksum (or SCTP, or a zero UDP checksum) leaves the change to
    // the ICMPv6 checksum.
    let inner = match checksum::l4_csum_offset(key.proto) {
        Some(o) if key.proto != proto::SCTP && ports + o + 2 <= ctx.len() as usize => {
            Some(ports + o)
        }
        _ => None,
    };
    if let Some(off) = inner
        && let Ok(old) = packet::load::<u16>(ctx, off)
        && !(key.proto == proto::UDP && old == 0)
    {
        let mut new = !fold(u64::from(!old) + u64::from(d));
        if key.proto == proto::UDP && new == 0 {
            new = 0xffff;
        }
        return packet::store(ctx, off, &new);
    }
    checksum::l4_replace(ctx, outer_csum, 0, u64::from(d), 0)
}

/// Two ports (network order) as the 4 bytes they occupy in a TCP/UDP header.
#[inline(always)]
fn port_pair(a: u16, b: u16) -> [u8; 4] {
    let a = a.to_ne_bytes();
    let b = b.to_ne_bytes();
    [a[0], a[1], b[0], b[1]]
}

/// Answers a flow to a service without endpoints with destination unreachable / port
/// unreachable from the frontend in the scratch key (its destination), quoting as much of the
/// packet as fits the minimum MTU, sent back out of the arrival interface. The packet is
/// rebuilt in place: room for the new IPv6 and ICMPv6 headers is made after the Ethernet
/// header and the quote trimmed.
#[inline(never)]
pub fn reject(ctx: &TcContext) -> Verdict {
    if !rate_ok() {
        return Verdict::drop(Reason::SvcRejectLimited);
    }
    rewritten(build_unreachable(ctx), Reason::SvcNoBackend)
}

/// Per-CPU token bucket for generated errors (RFC 4443 §2.4 (f)): `REJECT_RATE` per second
/// with bursts of `REJECT_BURST`.
#[repr(C)]
pub struct Bucket {
    tokens_ns: u64,
    last_ns: u64,
}

const REJECT_RATE: u64 = 1000;
const REJECT_BURST: u64 = 100;
const NS_PER_TOKEN: u64 = 1_000_000_000 / REJECT_RATE;

// Not pinned: the budget restarting with the datapath is harmless.
#[map(name = "SL_ICMP_BUDGET")]
static SL_ICMP_BUDGET: PerCpuArray<Bucket> = PerCpuArray::with_max_entries(1, 0);

/// Takes one token if there is one.
#[inline(always)]
fn rate_ok() -> bool {
    let Some(b) = SL_ICMP_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; programs do not preempt each other on a CPU.
    let b = unsafe { &mut *b };
    let now = ct::now();
    let cap = REJECT_BURST * NS_PER_TOKEN;
    let mut tokens = b.tokens_ns + now.saturating_sub(b.last_ns);
    if tokens > cap {
        tokens = cap;
    }
    b.last_ns = now;
    if tokens < NS_PER_TOKEN {
        b.tokens_ns = tokens;
        return false;
    }
    b.tokens_ns = tokens - NS_PER_TOKEN;
    true
}

const NEW_HDRS: usize = IPV6_HLEN + ICMP_HLEN;
/// Checksum chunks covering the largest error (its ICMPv6 message within the minimum MTU).
const CHUNKS: usize = (MIN_MTU - IPV6_HLEN).div_ceil(CHUNK);

#[inline(always)]
fn build_unreachable(ctx: &TcContext) -> Res<i32> {
    let s = area::get().ok_or(fail::HELPER)?;
    let len = ctx.len() as usize;
    if len < ETH_HLEN + IPV6_HLEN {
        return Err(fail::MALFORMED);
    }
    let mut quote = len - ETH_HLEN;
    if quote > MAX_QUOTE {
        quote = MAX_QUOTE;
    }
    let macs: [u8; 12] = packet::load(ctx, 0)?;
    // The client (the packet's source) is already in the scratch key.
    packet::adjust_room(ctx, NEW_HDRS as i32, BPF_ADJ_ROOM_MAC)?;
    let total = ETH_HLEN + NEW_HDRS + quote;
    packet::set_len(ctx, total as u32)?;

    let icmp_len = (ICMP_HLEN + quote) as u16;
    let l = icmp_len.to_be_bytes();
    let ty = ETH_P_IPV6.to_be_bytes();
    let eth = [
        macs[6], macs[7], macs[8], macs[9], macs[10], macs[11], macs[0], macs[1], macs[2], macs[3],
        macs[4], macs[5], ty[0], ty[1],
    ];
    packet::store(ctx, 0, &eth)?;
    let ip = [0x60u8, 0, 0, 0, l[0], l[1], proto::ICMPV6, HOP_LIMIT];
    packet::store(ctx, ETH_HLEN, &ip)?;
    packet::store(ctx, SRC_OFF, &s.key.dst)?;
    packet::store(ctx, DST_OFF, &s.key.src)?;
    // Built as one word: six zero bytes in an array literal became a `memset` call.
    let icmp = ((u64::from(DEST_UNREACH) << 56) | (u64::from(PORT_UNREACH) << 48)).to_be_bytes();
    packet::store(ctx, ETH_HLEN + IPV6_HLEN, &icmp)?;

    // The quoted packet went client → frontend.
    icmp6::complete_quote(ctx, &mut s.chunk, (&s.key.src, &s.key.dst), fail::MALFORMED)?;
    // Pseudo-header (RFC 8200 §8.1), then the ICMPv6 message.
    let pseudo = csum::pseudo6(&s.key.dst, &s.key.src, u32::from(icmp_len), proto::ICMPV6);
    let off = ETH_HLEN + IPV6_HLEN;
    let range = (off, total);
    let sum = checksum::sum_range::<CHUNKS>(
        ctx,
        &mut s.chunk,
        range,
        checksum::native(pseudo),
        fail::MALFORMED,
    )?;
    packet::store(ctx, off + 2, &checksum::field(sum))?;
    forward::redirect_out(ctx)
}
