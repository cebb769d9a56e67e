//! Hairpinning (RFC 6146 §3.8): an IPv6 packet to Pref64::T, T one of the pool addresses, is
//! processed as if its IPv4 translation had arrived on the IPv4 side. Translated and turned
//! back at once, it never goes out as IPv4: the packet stays IPv6 and only its addresses, ports
//! and checksum change.
//!
//! A pod (X1, x1) sending to (Pref64::T2, t2) gets its binding and session as for any IPv4
//! destination ((T1, t1), `state::outbound`, done by the caller). The IPv4 packet (T1, t1) →
//! (T2, t2) then goes through `state::inbound` like one from the uplink: an existing session,
//! a static binding that opens one, or a UDP binding under endpoint-independent filtering
//! gives the pod (X2, x2) behind (T2, t2). The packet reaches it from (Pref64::T1, t1), so
//! both sessions record the flow, with their TCP states, timeouts and garbage collection. The
//! answer, (X2, x2) → (Pref64::T1, t1), is the same case the other way round.
//!
//! The translator counts as one router on the way (hop limit − 1). Echo requests to a pool
//! address are the node's to answer on the IPv4 side, so the translator answers them in its
//! place. An ICMPv6 error about a hairpinned flow goes back the same way to the pod that sent
//! the packet it quotes.
//!
//! This is a stage of its own (`layout::PROG_NAT64_HAIRPIN`): `v6_to_v4` and `icmp_error` do
//! their half (the sender's binding and session, or the error's plan), leave the packet as it
//! arrived and hand it over ([`hand_over`]) with its state in the scratch area; the pipeline
//! tail-calls this stage. In the NAT64 programs themselves it exceeds the verifier's budget.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use sixlane_common::{
    layout::STAGE_NAT64_HAIRPIN,
    metrics::Reason,
    nat64::{
        addr, csum, header,
        icmp::{self, Rest},
        maps::{CFG_EIF_UDP, Config},
    },
    net::{ETH_HLEN, ETH_P_IPV6, HOP_LIMIT, ICMP_HLEN, IPV6_HLEN, IPV6_MIN_MTU, icmp6, proto},
};

use super::{
    TOO_LONG,
    area::{Area, Frame6, frame_len, hairpin as kind},
    reply, state,
};
use crate::{
    checksum,
    forward::{self, Ports, Route},
    icmp6::Icmp6,
    packet,
    verdict::{Res, Verdict},
};

/// Where the transport header is: `v6_to_v4` hands over only packets without extension
/// headers.
const L4: usize = ETH_HLEN + IPV6_HLEN;

/// Hands the packet in `s` over to the hairpin stage to do `what` (`area::hairpin`): the
/// verdict that makes the pipeline tail-call it.
#[inline(always)]
pub fn hand_over(s: &mut Area, what: u8) -> Verdict {
    s.hairpin = what;
    Verdict::tail_call(STAGE_NAT64_HAIRPIN)
}

/// The hairpin stage: does what the NAT64 program handing the packet over asked.
#[inline(always)]
pub fn run(ctx: &TcContext, cfg: &Config, s: &mut Area) -> Verdict {
    let what = s.hairpin;
    s.hairpin = kind::NONE;
    match what {
        kind::TRANSPORT => transport(ctx, cfg, s),
        kind::ECHO => echo(ctx, s),
        kind::ERROR => error(ctx, cfg, s),
        // Reached without a hand-over (nothing else tail-calls this stage).
        _ => Verdict::drop(Reason::Nat64Error),
    }
}

/// TCP or UDP from `s.flow`, bound to `s.map` (T1, t1), to the pool address `s.flow.y`, port
/// `s.flow.y_port`: delivered to the pod whose session or binding (T2, t2) is.
#[inline(never)]
fn transport(ctx: &TcContext, cfg: &Config, s: &mut Area) -> Verdict {
    let proto = s.flow.proto;
    let f = &mut s.inflow;
    f.proto = proto;
    f.tcp_flags = s.flow.tcp_flags;
    f.eif = cfg.flags & CFG_EIF_UDP != 0;
    f.static_only = !state::range_of(cfg, proto).contains(s.flow.y_port);
    f.opens = true;
    f.opened = false;
    f.t_port = s.flow.y_port;
    f.z_port = s.map.t_port;
    f.t_addr = s.flow.y;
    f.z = s.map.t_addr;
    // A port no session or static binding holds would be the node's own on the IPv4 side; its
    // answer would never come back through the translator, so it is refused like unsolicited
    // IPv4.
    if f.static_only && cfg.statics == 0 {
        return Verdict::drop(Reason::Nat64Unsolicited);
    }
    let mut slot = core::mem::MaybeUninit::uninit();
    if state::inbound(&mut s.keys, &mut s.inflow, &mut slot) != state::Inbound::Session {
        return Verdict::drop(Reason::Nat64Unsolicited);
    }
    // SAFETY: `inbound` initialised the slot when it found a session.
    let r = unsafe { slot.assume_init_ref() };
    match rewrite(ctx, cfg, s, L4, r) {
        Ok(v) => v,
        Err(reason) => Verdict::drop(reason),
    }
}

#[inline(always)]
fn rewrite(
    ctx: &TcContext,
    cfg: &Config,
    s: &mut Area,
    l4: usize,
    r: &state::Reverse,
) -> Res<Verdict> {
    // Pref64::T1, the source the other pod sees, lives in s.a6 from here on.
    addr::embed_into(&cfg.prefix, cfg.prefix_len, &s.map.t_addr, &mut s.a6);
    let len = if packet::gso_size(ctx) != 0 {
        0
    } else {
        (IPV6_HLEN as u16).saturating_add(s.ip6.payload_len)
    };
    let route = forward::pod_link(ctx, &mut s.fib, r.pod_if, len)
        .unwrap_or_else(|| forward::lookup6(ctx, &mut s.fib, &s.a6, &r.x_addr, Ports::NONE, len));
    let route = match route {
        Route::TooBig(mtu) => {
            let e = reply::Error::new(
                icmp6::PACKET_TOO_BIG,
                0,
                mtu.max(IPV6_MIN_MTU),
                Reason::Nat64TooBig,
            );
            return Ok(reply::icmp6_error(ctx, cfg, s, &e));
        }
        Route::None => return Err(Reason::Nat64NoRoute),
        route => route,
    };
    let proto = s.flow.proto;
    let csum_off = l4 + if proto == proto::TCP { 16 } else { 6 };
    let mangled = if proto == proto::UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    // Both addresses of the pseudo-header change; then both ports (apart: a checksum still to
    // be completed by the device holds only the pseudo-header's sum, see `v6_to_v4`).
    let d = checksum::delta(
        csum::sum(&s.ip6.src, csum::sum(&s.ip6.dst, 0)),
        csum::sum(&s.a6, csum::sum(&r.x_addr, 0)),
    );
    checksum::l4_replace(ctx, csum_off, 0, d, u64::from(BPF_F_PSEUDO_HDR) | mangled)?;
    let (x1, t2) = (s.flow.x_port.to_be_bytes(), s.flow.y_port.to_be_bytes());
    let (t1, x2) = (s.map.t_port.to_be_bytes(), r.x_port.to_be_bytes());
    let new = [t1[0], t1[1], x2[0], x2[1]];
    // Compared as words: an array comparison may become a `memcmp` call (see `crate::mem`).
    let (o, n) = (
        u32::from_ne_bytes([x1[0], x1[1], t2[0], t2[1]]),
        u32::from_ne_bytes(new),
    );
    if o != n {
        checksum::l4_replace(ctx, csum_off, u64::from(o), u64::from(n), 4 | mangled)?;
    }
    s.f6.ports = new;
    // The traffic class as the two translations would leave it (both header options apply);
    // the flow label does not survive IPv4.
    let tc = cfg.traffic_class_from(cfg.tos_from(s.ip6.traffic_class));
    let hop = s.ip6.hop_limit.saturating_sub(1);
    let (plen, next) = (s.ip6.payload_len, s.ip6.next);
    header::write6(&mut s.f6.ip, tc, plen, next, hop, &s.a6, &r.x_addr);
    s.f6.eth[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let route = if forward::peer_of(route, &s.fib, r.pod_if) && forward::pod_fast_path() {
        Route::Peer
    } else {
        route
    };
    let a = forward::send_frame(ctx, &s.fib, route, &mut s.f6, frame_len::<Frame6>(true))?;
    Ok(Verdict::new(Reason::Nat64Hairpin, a))
}

/// An ICMPv6 echo message from `s.flow` to a pool address. A request is answered for the node
/// (an IPv4 echo request to its own address is its kernel's), from Pref64::T, back where it
/// came from; no binding or session is made. A reply answers nothing the translator sent.
#[inline(never)]
fn echo(ctx: &TcContext, s: &mut Area) -> Verdict {
    if s.flow.echo_reply {
        return Verdict::drop(Reason::Nat64NoSession);
    }
    if !state::source_allowed(&s.ip6.src) {
        return Verdict::drop(Reason::Nat64SrcDenied);
    }
    match answer(ctx, s, L4) {
        Ok(a) => Verdict::new(Reason::Nat64HairpinEcho, a),
        Err(reason) => Verdict::drop(reason),
    }
}

#[inline(always)]
fn answer(ctx: &TcContext, s: &mut Area, l4: usize) -> Res<i32> {
    let h: [u8; 2] = packet::load(ctx, l4)?;
    // Only the type changes: swapping the addresses leaves the pseudo-header's sum as it was.
    let (old, new) = ([h[0], h[1]], [icmp6::ECHO_REPLY, h[1]]);
    checksum::l4_replace(
        ctx,
        l4 + 2,
        u64::from(u16::from_ne_bytes(old)),
        u64::from(u16::from_ne_bytes(new)),
        2,
    )?;
    packet::store(ctx, l4, &icmp6::ECHO_REPLY)?;
    let (plen, next) = (s.ip6.payload_len, s.ip6.next);
    header::write6(
        &mut s.hdr6,
        0,
        plen,
        next,
        HOP_LIMIT,
        &s.ip6.dst,
        &s.ip6.src,
    );
    packet::store(ctx, ETH_HLEN, &s.hdr6)?;
    forward::redirect_back(ctx)
}

/// An ICMPv6 error about a hairpinned flow: the quoted packet went (Pref64::T1, t1)
/// → (X2, x2), so the error's ICMPv4 translation would go to T1, a pool address, and be turned
/// back at once. It goes to the pod (X1, x1) behind (T1, t1) instead, still ICMPv6: from
/// Pref64::T2 (where both `icmpv6ErrorSource` settings would source it: the ICMPv4 error's
/// source and the quoted destination), type and code as the two translations leave them, the
/// quote rewritten to (X1, x1) → (Pref64::T2, t2) as that pod sent it. `plan_6to4` found
/// (T2, t2) in the session of X2.
#[inline(never)]
fn error(ctx: &TcContext, cfg: &Config, s: &mut Area) -> Verdict {
    match rewrite_error(ctx, cfg, s, L4) {
        Ok(a) => Verdict::new(Reason::Nat64Hairpin, a),
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn rewrite_error(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<i32> {
    // Hairpinned echo requests are answered, never delivered: only TCP and UDP are quoted.
    if s.plan.proto == proto::ICMP {
        return Err(Reason::Nat64IcmpNoSession);
    }
    let (il3, il4) = (l4 + ICMP_HLEN, l4 + ICMP_HLEN + IPV6_HLEN);
    let p: [u8; 4] = packet::load(ctx, il4)?;
    let (t1, x2) = (
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    );
    let (proto, t1_addr, t2_addr, t2) = (s.plan.proto, s.plan.z, s.plan.t_addr, s.plan.new_port);
    // X1 in s.b6, Pref64::T2 in s.a6.
    let x1 = state::peek_in(&mut s.keys.skey, proto, t1_addr, t1, t2_addr, t2, &mut s.b6)
        .ok_or(Reason::Nat64IcmpNoSession)?;
    addr::embed_into(&cfg.prefix, cfg.prefix_len, &t2_addr, &mut s.a6);
    let h: [u8; 2] = packet::load(ctx, l4)?;
    let m = icmp::hairpin6(h[0], h[1]).ok_or(Reason::Nat64IcmpDropped)?;
    let info = match m.rest {
        // No IPv4 link on the way: the MTU stays what the IPv6 side reported.
        Rest::Mtu => s.plan.rest.max(IPV6_MIN_MTU),
        Rest::Pointer => icmp::pointer_hairpin6(s.plan.rest).ok_or(Reason::Nat64IcmpDropped)?,
        Rest::FixedPointer(p) => u32::from(p),
        _ => 0,
    };
    let route = forward::lookup6(ctx, &mut s.fib, &s.a6, &s.b6, Ports::NONE, 0);
    if !route.usable() {
        return Err(Reason::Nat64NoRoute);
    }
    // The quoted transport header: ports and checksum (when quoted; a zero UDP checksum cannot
    // come from IPv6).
    let old = csum::add16(
        csum::add16(csum::sum(&s.inner6.src, csum::sum(&s.inner6.dst, 0)), t1),
        x2,
    );
    let new = csum::add16(csum::add16(csum::sum(&s.b6, csum::sum(&s.a6, 0)), x1), t2);
    let (x1b, t2b) = (x1.to_be_bytes(), t2.to_be_bytes());
    packet::store(ctx, il4, &[x1b[0], x1b[1], t2b[0], t2b[1]])?;
    if let Some(field) = checksum::l4_csum_offset(proto)
        && let Ok(c) = packet::load::<[u8; 2]>(ctx, il4 + field)
    {
        let mut c = csum::update(u16::from_be_bytes(c), csum::fold(old), csum::fold(new));
        if proto == proto::UDP && c == 0 {
            c = 0xffff;
        }
        packet::store(ctx, il4 + field, &c.to_be_bytes())?;
    }
    packet::store(ctx, il3 + 8, &s.b6)?;
    packet::store(ctx, il3 + 24, &s.a6)?;
    // RFC 4443 §2.4(c): the error fits the IPv6 minimum MTU.
    let max = ETH_HLEN + IPV6_MIN_MTU as usize;
    if ctx.len() as usize > max {
        packet::set_len(ctx, max as u32)?;
    }
    let off = ETH_HLEN + IPV6_HLEN;
    let icmp_len = (ctx.len() as usize).saturating_sub(off) as u16;
    let tc = cfg.traffic_class_from(cfg.tos_from(s.ip6.traffic_class));
    header::write6(
        &mut s.hdr6,
        tc,
        icmp_len,
        proto::ICMPV6,
        s.ip6.hop_limit.saturating_sub(1),
        &s.a6,
        &s.b6,
    );
    packet::store(ctx, ETH_HLEN, &s.hdr6)?;
    let icmp = Icmp6 {
        ty: m.ty,
        code: m.code,
        info,
        len: icmp_len,
    };
    icmp.write(ctx, &mut s.chunk, (&s.a6, &s.b6), TOO_LONG)?;
    forward::send(ctx, &s.fib, route)
}
