//! ICMP error translation with the embedded packet (RFC 7915 §4.2–4.3 and §5.2–5.3): the outer
//! header and the ICMP type/code are translated, and so is the inner (quoted) packet — its IP
//! header, its ports or echo identifier (reverse-mapped through the session it names) and its
//! transport checksum — because the receiver matches the error to a socket by that packet.
//! Packet Too Big ↔ Fragmentation Needed adjust the MTU for the 20-byte header difference.
//!
//! The inner header changes size, so the packet is reshaped: `bpf_skb_change_proto` swaps the
//! outer header's room, `bpf_skb_adjust_room` the inner one's, and the headers are then written
//! over the result. The result is cut to what an error may carry (576 bytes of IPv4, 1280 of
//! IPv6), so errors of any size translate, and the ICMP checksum is computed over what is sent.

use aya_ebpf::{bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_NET, programs::TcContext};
use sixlane_common::{
    metrics::Reason,
    nat64::{
        addr, csum,
        header::{self, Ip4},
        icmp::{self, Rest},
        maps::{CFG_ICMP6_FROM_DESTINATION, Config},
    },
    net::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, HDR_DIFF, ICMP_HLEN, IPV4_HLEN, IPV6_HLEN, IPV6_MIN_MTU,
        icmp4, icmp6, proto,
    },
};

use super::{
    TOO_LONG, area,
    area::Area,
    hairpin,
    reply::{CHUNKS4, ICMP4_MAX},
    sane, state,
};
use crate::{
    checksum,
    forward::{self, Ports},
    icmp6::Icmp6,
    packet,
    verdict::{Res, Verdict},
};

/// ICMPv6 error from the IPv6 side (a pod, or a router on the way to one) about a packet the
/// translator delivered → ICMPv4 error to the IPv4 peer. The outer header is in `s.ip6`.
#[inline(never)]
pub fn v6_to_v4(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    if let Err(r) = plan_6to4(ctx, cfg, s, l4 as usize) {
        return Verdict::drop(r);
    }
    if cfg.pool_index(&s.plan.z).is_some() {
        return hairpin::hand_over(s, area::hairpin::ERROR);
    }
    emit_6to4(ctx, cfg, s, l4)
}

#[inline(always)]
fn plan_6to4(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<()> {
    let (pre, plen) = (&cfg.prefix, cfg.prefix_len);
    let y = addr::extract(pre, plen, &s.ip6.dst).ok_or(Reason::Nat64BadAddr)?;
    let h: [u8; 8] = packet::load(ctx, l4)?;
    let m = icmp::icmp6_to_4(h[0], h[1]).ok_or(Reason::Nat64IcmpDropped)?;
    let inner_off = l4 + ICMP_HLEN;
    packet::load_into(ctx, inner_off, &mut s.hdr6)?;
    if s.hdr6[0] >> 4 != 6 {
        return Err(Reason::Nat64Malformed);
    }
    s.inner6.parse_into(&s.hdr6);
    let il4 = inner_off + IPV6_HLEN;
    // The quoted packet went Z' → X'; the error goes back to Z = y.
    let z = addr::extract(pre, plen, &s.inner6.src).ok_or(Reason::Nat64IcmpNoSession)?;
    if z != y {
        return Err(Reason::Nat64IcmpNoSession);
    }
    let p: [u8; 8] = packet::load(ctx, il4)?;
    let next = s.inner6.next;
    sane::quoted_transport(ctx, next, il4)?;
    let (proto, x_port, z_port, port_off, t6, t4) = match next {
        proto::TCP | proto::UDP => (
            next,
            u16::from_be_bytes([p[2], p[3]]),
            u16::from_be_bytes([p[0], p[1]]),
            2,
            0,
            0,
        ),
        proto::ICMPV6 => {
            let t4 = match p[0] {
                icmp6::ECHO_REPLY => icmp4::ECHO_REPLY,
                icmp6::ECHO_REQUEST => icmp4::ECHO_REQUEST,
                _ => return Err(Reason::Nat64IcmpNoSession),
            };
            (
                proto::ICMP,
                u16::from_be_bytes([p[4], p[5]]),
                0,
                4,
                p[0],
                t4,
            )
        }
        _ => return Err(Reason::Nat64IcmpNoSession),
    };
    let sm = state::peek_out(&mut s.keys.skey, proto, &s.inner6.dst, x_port, z, z_port)
        .ok_or(Reason::Nat64IcmpNoSession)?;
    let ih = &s.inner6;
    let (old_sum, new_sum) = if proto == proto::ICMP {
        // ICMPv6 → ICMPv4: the pseudo-header leaves the checksum, the type changes.
        let old = csum::pseudo6(&ih.src, &ih.dst, u32::from(ih.payload_len), proto::ICMPV6);
        let old = csum::add16(csum::add16(old, u16::from_be_bytes([t6, p[1]])), x_port);
        let new = csum::add16(u32::from(u16::from_be_bytes([t4, p[1]])), sm.t_port);
        (old, new)
    } else {
        let old = csum::add16(csum::sum(&ih.src, csum::sum(&ih.dst, 0)), x_port);
        let new = csum::add16(csum::sum(&z, csum::sum(&sm.t_addr, 0)), sm.t_port);
        (old, new)
    };
    let inner_len = ih.payload_len;
    let p = &mut s.plan;
    p.m = m;
    p.rest = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    p.proto = proto;
    p.inner_ty = t4;
    p.port_off = port_off;
    p.new_port = sm.t_port;
    p.inner_len = inner_len;
    p.old_sum = old_sum;
    p.new_sum = new_sum;
    p.t_addr = sm.t_addr;
    p.z = z;
    p.x_addr.copy_from_slice(&s.inner6.dst);
    Ok(())
}

#[inline(never)]
fn emit_6to4(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    match rewrite_6to4(ctx, cfg, s, l4 as usize) {
        Ok(a) => Verdict::new(Reason::Nat64IcmpErrOut, a),
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn rewrite_6to4(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<i32> {
    let (t_addr, z) = (s.plan.t_addr, s.plan.z);
    let route = forward::lookup4(ctx, &mut s.fib, t_addr, z, 0);
    if !route.usable() {
        return Err(Reason::Nat64NoRoute);
    }
    let rest: [u8; 4] = match s.plan.m.rest {
        Rest::Mtu => {
            let v4_mtu = packet::mtu(ctx, forward::oif(&s.fib));
            let v6_mtu = packet::mtu(ctx, 0);
            let mtu = icmp::frag_needed_mtu(s.plan.rest, v4_mtu, v6_mtu).min(0xffff) as u16;
            let b = mtu.to_be_bytes();
            [0, 0, b[0], b[1]]
        }
        Rest::Pointer => [
            icmp::pointer6_to_4(s.plan.rest).ok_or(Reason::Nat64IcmpDropped)?,
            0,
            0,
            0,
        ],
        _ => [0; 4],
    };
    let inner_off = l4 + ICMP_HLEN;
    // The quoted header's fields we need, read before the reshaping overwrites them.
    let raw: [u8; 8] = packet::load(ctx, inner_off)?;
    // The quoted header keeps RFC 7915's copy rule: it describes a packet that travelled the
    // other way, not one the translator sends (the header options apply to the outer one).
    let inner_tos = (raw[0] << 4) | (raw[1] >> 4);
    let inner_hop = raw[7];
    fix_inner(ctx, inner_off + IPV6_HLEN, s)?;

    // Reshape: outer 40 → 20 (change_proto), inner 40 → 20 (adjust_room at the end of the new
    // outer header, which takes the ICMP header and the inner header's first 12 bytes: both
    // are rewritten below).
    packet::change_proto(ctx, ETH_P_IP)?;
    packet::adjust_room(ctx, -(HDR_DIFF as i32), BPF_ADJ_ROOM_NET)?;
    // RFC 1812 §4.3.2.3: an ICMPv4 error is at most 576 bytes, and an ICMPv6 error may be
    // 1280 or more: the quote is cut (its header keeps the length of the packet it quotes).
    let max = ETH_HLEN + ICMP4_MAX;
    if ctx.len() as usize > max {
        packet::set_len(ctx, max as u32)?;
    }
    let inner_len = (IPV4_HLEN as u16).wrapping_add(s.plan.inner_len);
    Ip4 {
        ihl: IPV4_HLEN as u8,
        tos: inner_tos,
        total_len: inner_len,
        id: 0,
        df: inner_len > header::DF_THRESHOLD,
        mf: false,
        frag_off: 0,
        ttl: inner_hop,
        proto: s.plan.proto,
        src: z,
        dst: t_addr,
    }
    .write_into(&mut s.hdr4);
    let off = ETH_HLEN + IPV4_HLEN;
    packet::store(ctx, off + ICMP_HLEN, &s.hdr4)?;
    let icmp_len = (ctx.len() as usize).saturating_sub(off) as u16;
    let id = s.ipv4_id();
    let mut outer = header::v4_for_v6(&s.ip6, icmp_len, t_addr, z, id);
    outer.ttl = s.ip6.hop_limit.saturating_sub(1);
    outer.tos = cfg.tos_from(outer.tos);
    outer.id = cfg.identification(outer.df, outer.id);
    outer.write_into(&mut s.hdr4);
    packet::store(ctx, 12, &ETH_P_IP.to_be_bytes())?;
    packet::store(ctx, ETH_HLEN, &s.hdr4)?;
    let (ty, code) = (s.plan.m.ty, s.plan.m.code);
    packet::store(
        ctx,
        off,
        &[ty, code, 0, 0, rest[0], rest[1], rest[2], rest[3]],
    )?;
    let acc =
        checksum::sum_range::<CHUNKS4>(ctx, &mut s.chunk, (off, ctx.len() as usize), 0, TOO_LONG)?;
    packet::store(ctx, off + 2, &checksum::field(acc))?;
    forward::send(ctx, &s.fib, route)
}

/// Applies the plan's change to the quoted transport header at `il4`: the port or identifier,
/// the echo type, and the checksum (when the quote includes it).
#[inline(always)]
fn fix_inner(ctx: &TcContext, il4: usize, s: &Area) -> Res<()> {
    let plan = &s.plan;
    packet::store(
        ctx,
        il4 + usize::from(plan.port_off),
        &plan.new_port.to_be_bytes(),
    )?;
    if plan.proto == proto::ICMP {
        packet::store(ctx, il4, &plan.inner_ty)?;
    }
    // (TCP, UDP or ICMP: a checksum every time.)
    let Some(field) = checksum::l4_csum_offset(plan.proto) else {
        return Ok(());
    };
    let off = il4 + field;
    if let Ok(c) = packet::load::<[u8; 2]>(ctx, off) {
        let old = u16::from_be_bytes(c);
        // A zero UDP checksum (IPv4: none) stays none.
        if !(plan.proto == proto::UDP && old == 0) {
            let mut new = csum::update(old, csum::fold(plan.old_sum), csum::fold(plan.new_sum));
            if plan.proto == proto::UDP && new == 0 {
                new = 0xffff;
            }
            packet::store(ctx, off, &new.to_be_bytes())?;
        }
    }
    Ok(())
}

/// ICMPv4 error from the IPv4 side about a packet the translator sent → ICMPv6 error to the
/// pod. The outer header is in `s.ip4`. [`Verdict::NOT_OURS`]: the quoted packet is not a NAT64
/// one (the node's own traffic).
#[inline(never)]
pub fn v4_to_v6(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    match plan_4to6(ctx, cfg, s, l4 as usize) {
        Ok(true) => emit_4to6(ctx, cfg, s, l4),
        Ok(false) => Verdict::NOT_OURS,
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn plan_4to6(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<bool> {
    let Ok(h) = packet::load::<[u8; 8]>(ctx, l4) else {
        return Ok(false);
    };
    let inner_off = l4 + ICMP_HLEN;
    if packet::load_into(ctx, inner_off, &mut s.hdr4).is_err() {
        return Ok(false);
    }
    s.inner4.parse_into(&s.hdr4);
    let ih = s.inner4;
    if s.hdr4[0] >> 4 != 4 || usize::from(ih.ihl) != IPV4_HLEN {
        // The translator never sends IPv4 options, so this quotes someone else's packet.
        return Ok(false);
    }
    let Ok(p) = packet::load::<[u8; 8]>(ctx, inner_off + IPV4_HLEN) else {
        return Ok(false);
    };
    let (proto, t_port, z_port, port_off) = match ih.proto {
        proto::TCP | proto::UDP => (
            ih.proto,
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
            0,
        ),
        proto::ICMP if p[0] == icmp4::ECHO_REQUEST => {
            (proto::ICMP, u16::from_be_bytes([p[4], p[5]]), 0, 4)
        }
        _ => return Ok(false),
    };
    let Some(x_port) = state::peek_in(
        &mut s.keys.skey,
        proto,
        ih.src,
        t_port,
        ih.dst,
        z_port,
        &mut s.plan.x_addr,
    ) else {
        return Ok(false);
    };
    // Ours from here on.
    let m = icmp::icmp4_to_6(h[0], h[1]).ok_or(Reason::Nat64IcmpDropped)?;
    if usize::from(s.ip4.ihl) != IPV4_HLEN || s.ip4.ttl <= 1 {
        return Err(Reason::Nat64IcmpDropped);
    }
    // The outer header whole, the quoted one's checksum (its IHL was checked above).
    let outer: [u8; IPV4_HLEN] = packet::load(ctx, ETH_HLEN)?;
    sane::ipv4(ctx, ETH_HLEN, &outer, IPV4_HLEN as u8)?;
    sane::ipv4(ctx, inner_off, &s.hdr4, IPV4_HLEN as u8)?;
    sane::quoted_transport(ctx, ih.proto, inner_off + IPV4_HLEN)?;
    // Z' in s.b6.
    addr::embed_into(&cfg.prefix, cfg.prefix_len, &ih.dst, &mut s.b6);
    let inner_l4_len = ih.total_len.saturating_sub(IPV4_HLEN as u16);
    let (old_sum, new_sum, inner_ty) = if proto == proto::ICMP {
        // ICMPv4 → ICMPv6: the pseudo-header joins the checksum, the type changes.
        let old = csum::add16(u32::from(u16::from_be_bytes([p[0], p[1]])), t_port);
        let new = csum::pseudo6(
            &s.plan.x_addr,
            &s.b6,
            u32::from(inner_l4_len),
            proto::ICMPV6,
        );
        let new = csum::add16(
            csum::add16(new, u16::from_be_bytes([icmp6::ECHO_REQUEST, p[1]])),
            x_port,
        );
        (old, new, icmp6::ECHO_REQUEST)
    } else {
        let old = csum::add16(csum::sum(&ih.src, csum::sum(&ih.dst, 0)), t_port);
        let new = csum::add16(csum::sum(&s.plan.x_addr, csum::sum(&s.b6, 0)), x_port);
        (old, new, 0)
    };
    let rest = match m.rest {
        Rest::Mtu => u32::from(u16::from_be_bytes([h[6], h[7]])),
        Rest::Pointer => u32::from(h[4]),
        _ => 0,
    };
    let p = &mut s.plan;
    p.m = m;
    p.rest = rest;
    p.proto = proto;
    p.inner_ty = inner_ty;
    p.port_off = port_off;
    p.new_port = x_port;
    p.inner_len = ih.total_len;
    p.old_sum = old_sum;
    p.new_sum = new_sum;
    p.t_addr = ih.src;
    p.z = ih.dst;
    Ok(true)
}

#[inline(never)]
fn emit_4to6(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    match rewrite_4to6(ctx, cfg, s, l4 as usize) {
        Ok(a) => Verdict::new(Reason::Nat64IcmpErrIn, a),
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn rewrite_4to6(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<i32> {
    // Source the ICMPv6 error from the IPv4 router that sent it (Jool's
    // source-icmpv6-errors-better), so traceroute through the translator shows real hops; or,
    // configured so, from the quoted packet's destination Z' (RFC 6146's letter). The error's
    // source goes to s.a6; Z' is in s.b6 (from the plan).
    if cfg.flags & CFG_ICMP6_FROM_DESTINATION != 0 {
        s.a6 = s.b6;
    } else {
        addr::embed_into(&cfg.prefix, cfg.prefix_len, &s.ip4.src, &mut s.a6);
    }
    let route = forward::lookup6(ctx, &mut s.fib, &s.a6, &s.plan.x_addr, Ports::NONE, 0);
    if !route.usable() {
        return Err(Reason::Nat64NoRoute);
    }
    let info: u32 = match s.plan.m.rest {
        Rest::Mtu => {
            let v6_mtu = packet::mtu(ctx, forward::oif(&s.fib));
            let v4_mtu = packet::mtu(ctx, 0);
            icmp::ptb_mtu(s.plan.rest, u32::from(s.plan.inner_len), v6_mtu, v4_mtu)
        }
        Rest::Pointer => icmp::pointer4_to_6(s.plan.rest as u8).ok_or(Reason::Nat64IcmpDropped)?,
        Rest::FixedPointer(p) => u32::from(p),
        _ => 0,
    };
    let inner_off = l4 + ICMP_HLEN;
    let raw: [u8; 9] = packet::load(ctx, inner_off)?;
    let (inner_tc, inner_ttl) = (raw[1], raw[8]);
    fix_inner(ctx, inner_off + IPV4_HLEN, s)?;

    // Reshape: outer 20 → 40 (change_proto), inner 20 → 40 (adjust_room right after the new
    // outer header; everything up to the inner transport header is rewritten below).
    packet::change_proto(ctx, ETH_P_IPV6)?;
    packet::adjust_room(ctx, HDR_DIFF as i32, BPF_ADJ_ROOM_NET)?;
    // RFC 4443 §2.4(c): the error must fit the IPv6 minimum MTU.
    let max = ETH_HLEN + IPV6_MIN_MTU as usize;
    if ctx.len() as usize > max {
        packet::set_len(ctx, max as u32)?;
    }
    let off = ETH_HLEN + IPV6_HLEN;
    header::write6(
        &mut s.hdr6,
        inner_tc,
        s.plan.inner_len.saturating_sub(IPV4_HLEN as u16),
        header::proto_to_v6(s.plan.proto),
        inner_ttl,
        &s.plan.x_addr,
        &s.b6,
    );
    packet::store(ctx, off + ICMP_HLEN, &s.hdr6)?;
    let icmp_len = (ctx.len() as usize).saturating_sub(off) as u16;
    header::write6(
        &mut s.hdr6,
        cfg.traffic_class_from(s.ip4.tos),
        icmp_len,
        proto::ICMPV6,
        s.ip4.ttl.saturating_sub(1),
        &s.a6,
        &s.plan.x_addr,
    );
    packet::store(ctx, 12, &ETH_P_IPV6.to_be_bytes())?;
    packet::store(ctx, ETH_HLEN, &s.hdr6)?;
    let icmp = Icmp6 {
        ty: s.plan.m.ty,
        code: s.plan.m.code,
        info,
        len: icmp_len,
    };
    icmp.write(ctx, &mut s.chunk, (&s.a6, &s.plan.x_addr), TOO_LONG)?;
    forward::send(ctx, &s.fib, route)
}
