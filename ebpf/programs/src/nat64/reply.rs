//! ICMP errors the translator originates (RFC 7915 §4.4/§5.4, RFC 6146 §3.5): Time Exceeded when
//! the hop limit runs out here, Packet Too Big / Fragmentation Needed when the next hop is too
//! small, Destination Unreachable when the pool is exhausted or a destination is refused.
//!
//! The packet is turned into the error in place: trimmed to what the error may quote, headers
//! inserted after the Ethernet header, checksum computed over the whole message, then routed
//! back to the sender. Errors are never sent about errors (the callers check).

use aya_ebpf::{bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, programs::TcContext};
use sixlane_common::{
    metrics::Reason,
    nat64::{
        addr,
        header::{self, Ip4},
        maps::Config,
    },
    net::{ETH_HLEN, HOP_LIMIT, ICMP_HLEN, IPV4_HLEN, IPV6_HLEN, IPV6_MIN_MTU, proto},
};

use super::{TOO_LONG, area::Area};
use crate::{
    checksum,
    forward::{self, Ports},
    icmp6::{self, Icmp6},
    packet,
    verdict::{Res, Verdict},
};

/// RFC 1812 §4.3.2.3: an ICMPv4 error is at most 576 bytes (originated or translated).
pub const ICMP4_MAX: usize = 576;
/// Chunks covering the largest ICMPv4 error (556 bytes after the header).
pub const CHUNKS4: usize = (ICMP4_MAX - IPV4_HLEN).div_ceil(checksum::CHUNK);

/// An error to originate: type, code, the 32-bit field after the checksum (MTU or pointer) and
/// the reason the packet is counted under when the error goes out.
pub struct Error {
    pub ty: u8,
    pub code: u8,
    pub info: u32,
    pub reason: Reason,
}

impl Error {
    #[inline(always)]
    pub const fn new(ty: u8, code: u8, info: u32, reason: Reason) -> Self {
        Self {
            ty,
            code,
            info,
            reason,
        }
    }
}

/// Turns the IPv6 packet whose header is `s.ip6` into the ICMPv6 error `e` to its source and
/// routes it there. The error comes from the translator's own IPv6 identity, its first pool
/// address embedded in the prefix (so traceroute shows the translator as a hop).
#[inline(never)]
pub fn icmp6_error(ctx: &TcContext, cfg: &Config, s: &mut Area, e: &Error) -> Verdict {
    match build6(ctx, cfg, s, e) {
        Ok(a) => Verdict::new(e.reason, a),
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn build6(ctx: &TcContext, cfg: &Config, s: &mut Area, e: &Error) -> Res<i32> {
    let room = IPV6_HLEN + ICMP_HLEN;
    // RFC 4443 §2.4(c): quote as much as fits in the IPv6 minimum MTU.
    let max_quote = IPV6_MIN_MTU as usize - room;
    let quote = (ctx.len() as usize).saturating_sub(ETH_HLEN).min(max_quote);
    packet::set_len(ctx, (ETH_HLEN + quote) as u32)?;
    packet::adjust_room(ctx, room as i32, BPF_ADJ_ROOM_MAC)?;
    let icmp_len = (ICMP_HLEN + quote) as u16;
    addr::embed_into(&cfg.prefix, cfg.prefix_len, &cfg.addrs[0], &mut s.a6);
    header::write6(
        &mut s.hdr6,
        0,
        icmp_len,
        proto::ICMPV6,
        HOP_LIMIT,
        &s.a6,
        &s.ip6.src,
    );
    packet::store(ctx, ETH_HLEN, &s.hdr6)?;
    icmp6::complete_quote(ctx, &mut s.chunk, (&s.ip6.src, &s.ip6.dst), TOO_LONG)?;
    let icmp = Icmp6 {
        ty: e.ty,
        code: e.code,
        info: e.info,
        len: icmp_len,
    };
    icmp.write(ctx, &mut s.chunk, (&s.a6, &s.ip6.src), TOO_LONG)?;
    let route = forward::lookup6(ctx, &mut s.fib, &s.a6, &s.ip6.src, Ports::NONE, 0);
    forward::send(ctx, &s.fib, route)
}

/// Turns the IPv4 packet whose header is `s.ip4` into the ICMPv4 error `e` from its destination
/// (a pool address) to its source and routes it there.
#[inline(never)]
pub fn icmp4_error(ctx: &TcContext, s: &mut Area, e: &Error) -> Verdict {
    match build4(ctx, s, e) {
        Ok(a) => Verdict::new(e.reason, a),
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn build4(ctx: &TcContext, s: &mut Area, e: &Error) -> Res<i32> {
    let src = s.ip4.dst;
    let dst = s.ip4.src;
    let room = IPV4_HLEN + ICMP_HLEN;
    let quote = (ctx.len() as usize)
        .saturating_sub(ETH_HLEN)
        .min(ICMP4_MAX - room);
    packet::set_len(ctx, (ETH_HLEN + quote) as u32)?;
    packet::adjust_room(ctx, room as i32, BPF_ADJ_ROOM_MAC)?;
    let id = s.ipv4_id();
    Ip4 {
        ihl: IPV4_HLEN as u8,
        tos: 0,
        total_len: (room + quote) as u16,
        id,
        df: false,
        mf: false,
        frag_off: 0,
        ttl: HOP_LIMIT,
        proto: proto::ICMP,
        src,
        dst,
    }
    .write_into(&mut s.hdr4);
    packet::store(ctx, ETH_HLEN, &s.hdr4)?;
    let i = e.info.to_be_bytes();
    let off = ETH_HLEN + IPV4_HLEN;
    packet::store(ctx, off, &[e.ty, e.code, 0, 0, i[0], i[1], i[2], i[3]])?;
    let acc =
        checksum::sum_range::<CHUNKS4>(ctx, &mut s.chunk, (off, ctx.len() as usize), 0, TOO_LONG)?;
    packet::store(ctx, off + 2, &checksum::field(acc))?;
    let route = forward::lookup4(ctx, &mut s.fib, src, dst, 0);
    forward::send(ctx, &s.fib, route)
}
