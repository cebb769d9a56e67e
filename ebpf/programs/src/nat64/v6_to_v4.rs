//! IPv6 → IPv4 (RFC 7915 §5, RFC 6146 §3.5 outbound): a pod's packet to Pref64::Y leaves as an
//! IPv4 packet from the pool address and port of its binding. Y a pool address of its own: the
//! packet is `hairpin`'s.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use sixlane_common::{
    metrics::Reason,
    nat64::{
        addr::{self, is_global_v4},
        csum, header, icmp,
        maps::{CFG_CLAMP_MSS, CFG_WKP_STRICT, Config},
    },
    net::{
        ETH_HLEN, ETH_P_IP, HDR_DIFF, IPV4_HLEN, IPV6_HLEN, IPV6_MIN_MTU, icmp4, icmp6, proto,
        tcp_flags,
    },
};

use super::{
    area,
    area::{Area, Frame4, frame_len},
    hairpin, hold, icmp_error, mss, reply, state,
};
use crate::{
    checksum,
    forward::{self, Route},
    packet,
    parse::{self, Frag, L3},
    verdict::{Res, Verdict},
};

/// Translates an IPv6 packet whose destination is in the prefix. Every outcome is counted by
/// the caller.
#[inline(never)]
pub fn run(ctx: &TcContext, cfg: &Config, l3: &L3, pod_if: u32) -> Verdict {
    let Some(s) = area::get() else {
        return Verdict::drop(Reason::Nat64Error);
    };
    s.flow.pod_if = pod_if;
    if packet::load_into_fast(ctx, ETH_HLEN, &mut s.hdr6).is_err() {
        return Verdict::drop(Reason::Nat64Malformed);
    }
    s.ip6.parse_into(&s.hdr6);
    let Some(y) = addr::extract(&cfg.prefix, cfg.prefix_len, &s.ip6.dst) else {
        return Verdict::drop(Reason::Nat64BadAddr);
    };
    if l3.frag != Frag::No {
        return Verdict::drop(Reason::Nat64Fragment);
    }
    if l3.l4_off != ETH_HLEN + IPV6_HLEN {
        return Verdict::drop(Reason::Nat64ExtHeader);
    }
    let l4 = l3.l4_off;
    let icmp_error = if s.ip6.next == proto::ICMPV6 {
        match parse::icmp(ctx, l4) {
            Ok((ty, _, _)) => icmp::is_error6(ty),
            Err(_) => return Verdict::drop(Reason::Nat64Malformed),
        }
    } else {
        false
    };
    // Sources are checked against the pod CIDRs when a session is created (packets of an
    // existing session come from an address already checked), and before any ICMP error is
    // sent back (never reflect errors to a source that may not use NAT64). ICMPv6 errors may
    // come from any router on the way; their inner packet must match a session instead.
    if cfg.flags & CFG_WKP_STRICT != 0 && !is_global_v4(y) {
        if !state::source_allowed(&s.ip6.src) {
            return Verdict::drop(Reason::Nat64SrcDenied);
        }
        if icmp_error {
            return Verdict::drop(Reason::Nat64IcmpDropped);
        }
        let e = reply::Error::new(
            icmp6::DEST_UNREACH,
            icmp6::ADMIN_PROHIBITED,
            0,
            Reason::Nat64DstRefused,
        );
        return reply::icmp6_error(ctx, cfg, s, &e);
    }
    // The translator forwards like a router: decrement, and answer an exhausted hop limit.
    if !forward::may_forward(s.ip6.hop_limit) {
        if icmp_error {
            return Verdict::drop(Reason::Nat64IcmpDropped);
        }
        if !state::source_allowed(&s.ip6.src) {
            return Verdict::drop(Reason::Nat64SrcDenied);
        }
        let e = reply::Error::new(icmp6::TIME_EXCEEDED, 0, 0, Reason::Nat64HopLimit);
        return reply::icmp6_error(ctx, cfg, s, &e);
    }
    if icmp_error {
        return icmp_error::v6_to_v4(ctx, cfg, s, l4 as u32);
    }
    // The flow and its session first (a call of its own, so the session code and the
    // rewriting code never stack their frames on top of each other).
    if let Err(d) = flow(ctx, s, y, l4) {
        return d;
    }
    // Hairpinning (RFC 6146 §3.8): to one of the translator's own pool addresses. (Asked where
    // it is needed: a flag kept across the session code would double what the verifier walks.)
    if s.flow.proto == proto::ICMP && cfg.pool_index(&s.flow.y).is_some() {
        return hairpin::hand_over(s, area::hairpin::ECHO);
    }
    match state::outbound(cfg, &mut s.keys, &s.flow, &mut s.map) {
        Reason::Pass => {}
        Reason::Nat64PoolExhausted => {
            // RFC 6146 §3.5.1.1: no binding possible → Destination Unreachable (address
            // unreachable). Existing flows keep their bindings.
            let e = reply::Error::new(
                icmp6::DEST_UNREACH,
                icmp6::ADDR_UNREACH,
                0,
                Reason::Nat64PoolExhausted,
            );
            return reply::icmp6_error(ctx, cfg, s, &e);
        }
        r => return Verdict::drop(r),
    }
    if s.map.learn && pod_if != 0 {
        forward::learn_pod_link(ctx, pod_if);
    }
    if cfg.pool_index(&s.flow.y).is_some() {
        return hairpin::hand_over(s, area::hairpin::TRANSPORT);
    }
    match s.ip6.next {
        proto::TCP | proto::UDP => {
            let v = transport(ctx, cfg, s, l4 as u32);
            hold::outbound(cfg, s, v)
        }
        _ => echo(ctx, cfg, s, l4 as u32),
    }
}

/// Reads the transport fields of the packet into `s.flow`: ports (or the echo identifier),
/// TCP flags. Packets that cannot open or use a session are answered here.
#[inline(always)]
fn flow(ctx: &TcContext, s: &mut Area, y: [u8; 4], l4: usize) -> Result<(), Verdict> {
    let (proto, l4_len) = (s.ip6.next, s.ip6.payload_len);
    let f = &mut s.flow;
    f.y = y;
    f.x_addr.copy_from_slice(&s.ip6.src);
    f.echo_reply = false;
    match proto {
        proto::TCP => {
            // Ports, data offset and flags in one load.
            let b: [u8; 14] = packet::load_fast(ctx, l4).map_err(Verdict::drop)?;
            f.proto = proto;
            f.x_port = u16::from_be_bytes([b[0], b[1]]);
            f.y_port = u16::from_be_bytes([b[2], b[3]]);
            f.tcp_flags = b[13];
            f.l4_hlen = u16::from(b[12] >> 4) * 4;
            // (A payload length of 0, a BIG TCP super-packet, fails here too: its IPv4
            // translation could not say its length either.)
            if !header::tcp_hlen_ok(f.l4_hlen, l4_len) {
                return Err(Verdict::drop(Reason::Nat64Malformed));
            }
        }
        proto::UDP => {
            let b: [u8; 8] = packet::load_fast(ctx, l4).map_err(Verdict::drop)?;
            f.proto = proto;
            f.x_port = u16::from_be_bytes([b[0], b[1]]);
            f.y_port = u16::from_be_bytes([b[2], b[3]]);
            f.l4_hlen = 8;
            f.tcp_flags = 0;
            if !header::udp_len_ok(u16::from_be_bytes([b[4], b[5]]), l4_len) {
                return Err(Verdict::drop(Reason::Nat64Malformed));
            }
            if b[6] == 0 && b[7] == 0 {
                // RFC 8200 §8.1: zero is not a valid IPv6 UDP checksum.
                return Err(Verdict::drop(Reason::Nat64UdpChecksum));
            }
        }
        proto::ICMPV6 => {
            let (ty, code, id) =
                parse::icmp(ctx, l4).map_err(|_| Verdict::drop(Reason::Nat64Malformed))?;
            // Echo Requests open sessions; an Echo Reply answers a request an IPv4 host sent
            // through a static binding, and needs that session (`state::outbound`).
            if (ty != icmp6::ECHO_REQUEST && ty != icmp6::ECHO_REPLY) || code != 0 {
                return Err(Verdict::drop(Reason::Nat64IcmpDropped));
            }
            f.echo_reply = ty == icmp6::ECHO_REPLY;
            f.proto = proto::ICMP;
            f.x_port = id;
            f.y_port = 0;
            f.tcp_flags = 0;
            f.l4_hlen = 8;
        }
        _ => return Err(Verdict::drop(Reason::Nat64Proto)),
    }
    Ok(())
}

/// Routes the translation of `s.ip6` (`len` bytes, or one GSO segment's worth). A packet that
/// would not fit is answered with Packet Too Big (`Err` carries that outcome).
#[inline(always)]
fn route(
    ctx: &TcContext,
    cfg: &Config,
    s: &mut Area,
    m: &state::Mapping,
    y: [u8; 4],
    len: u16,
) -> Result<Route, Verdict> {
    match forward::lookup4_cached(ctx, &mut s.fib, &mut s.routes, m.t_addr, y, len, m.now) {
        Route::TooBig(mtu) => {
            let ptb = mtu.saturating_add(HDR_DIFF as u32).max(IPV6_MIN_MTU);
            let e = reply::Error::new(icmp6::PACKET_TOO_BIG, 0, ptb, Reason::Nat64TooBig);
            Err(reply::icmp6_error(ctx, cfg, s, &e))
        }
        Route::None => Err(Verdict::drop(Reason::Nat64NoRoute)),
        r => Ok(r),
    }
}

/// Length checked against the route MTU: the translated packet, or one segment of a GSO
/// super-packet.
#[inline(always)]
fn check_len(ctx: &TcContext, l4_len: u16, l4_hlen: u16) -> u16 {
    let gso = packet::gso_size(ctx);
    if gso != 0 {
        let seg = IPV4_HLEN as u32 + u32::from(l4_hlen) + gso;
        return seg.min(0xffff) as u16;
    }
    (IPV4_HLEN as u16).saturating_add(l4_len)
}

/// Replaces the IPv6 header by the IPv4 one (RFC 7915 §5.1) and sends the packet; with
/// `ports`, the TCP/UDP ports in `s.f4.ports` are written along with it.
#[inline(always)]
fn finish(
    ctx: &TcContext,
    cfg: &Config,
    s: &mut Area,
    m: &state::Mapping,
    y: [u8; 4],
    route: Route,
    ports: bool,
) -> Res<i32> {
    packet::change_proto(ctx, ETH_P_IP)?;
    let id = s.ipv4_id();
    let mut v4 = header::v4_for_v6(&s.ip6, s.ip6.payload_len, m.t_addr, y, id);
    v4.ttl = s.ip6.hop_limit.saturating_sub(1);
    v4.tos = cfg.tos_from(v4.tos);
    v4.id = cfg.identification(v4.df, v4.id);
    v4.write_into(&mut s.f4.ip);
    s.f4.eth[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let len = frame_len::<Frame4>(ports);
    forward::send_frame(ctx, &s.fib, route, &mut s.f4, len)
}

/// TCP or UDP.
#[inline(never)]
fn transport(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    match transport_inner(ctx, cfg, s, l4 as usize) {
        Ok(d) => d,
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn transport_inner(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<Verdict> {
    let (proto, tcp_flags, sport, y) = (s.flow.proto, s.flow.tcp_flags, s.flow.x_port, s.flow.y);
    let dport = s.flow.y_port;
    let l4_hlen = s.flow.l4_hlen;
    let m = s.map;
    let csum_off = l4 + if proto == proto::TCP { 16 } else { 6 };
    let len = check_len(ctx, s.ip6.payload_len, l4_hlen);
    let route = match route(ctx, cfg, s, &m, y, len) {
        Ok(r) => r,
        Err(d) => return Ok(d),
    };
    let mangled = if proto == proto::UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    if proto == proto::TCP && tcp_flags & tcp_flags::SYN != 0 && cfg.flags & CFG_CLAMP_MSS != 0 {
        // IPv4 segments must fit the egress device and the configured IPv4 path MTU.
        let mtu = packet::mtu(ctx, forward::oif(&s.fib));
        mss::clamp(ctx, l4, l4_hlen, cfg.mss_max(mtu))?;
    }
    // The pseudo-header's addresses change (lengths and protocol are equal for TCP and UDP, so
    // they cancel).
    let d = checksum::delta(
        csum::sum(&s.ip6.src, csum::sum(&s.ip6.dst, 0)),
        csum::sum(&m.t_addr, csum::sum(&y, 0)),
    );
    checksum::l4_replace(ctx, csum_off, 0, d, u64::from(BPF_F_PSEUDO_HDR) | mangled)?;
    if sport != m.t_port {
        let (o, n) = (sport.to_be(), m.t_port.to_be());
        checksum::l4_replace(ctx, csum_off, u64::from(o), u64::from(n), 2 | mangled)?;
    }
    // The source port is written with the new headers.
    let (t, d) = (m.t_port.to_be_bytes(), dport.to_be_bytes());
    s.f4.ports = [t[0], t[1], d[0], d[1]];
    let a = finish(ctx, cfg, s, &m, y, route, true)?;
    Ok(Verdict::new(Reason::Nat64Out, a))
}

/// ICMPv6 Echo Request → ICMPv4 Echo Request with the binding's identifier (RFC 6146 §3.5.3),
/// and Echo Reply → Echo Reply (a pod answering through a static binding).
#[inline(never)]
fn echo(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: u32) -> Verdict {
    match echo_inner(ctx, cfg, s, l4 as usize) {
        Ok(d) => d,
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
fn echo_inner(ctx: &TcContext, cfg: &Config, s: &mut Area, l4: usize) -> Res<Verdict> {
    let (id, y) = (s.flow.x_port, s.flow.y);
    let m = s.map;
    let h: [u8; 2] = packet::load(ctx, l4)?;
    let (ty, code) = (h[0], h[1]);
    let len = (IPV4_HLEN as u16).saturating_add(s.ip6.payload_len);
    let route = match route(ctx, cfg, s, &m, y, len) {
        Ok(r) => r,
        Err(d) => return Ok(d),
    };
    let csum_off = l4 + 2;
    // ICMPv4 has no pseudo-header: take the IPv6 one out of the checksum.
    let d = checksum::delta(
        csum::pseudo6(
            &s.ip6.src,
            &s.ip6.dst,
            u32::from(s.ip6.payload_len),
            proto::ICMPV6,
        ),
        0,
    );
    checksum::l4_replace(ctx, csum_off, 0, d, 0)?;
    let old = u16::from_ne_bytes([ty, code]);
    let ty4 = if ty == icmp6::ECHO_REPLY {
        icmp4::ECHO_REPLY
    } else {
        icmp4::ECHO_REQUEST
    };
    let new = u16::from_ne_bytes([ty4, code]);
    checksum::l4_replace(ctx, csum_off, u64::from(old), u64::from(new), 2)?;
    packet::store(ctx, l4, &ty4)?;
    if id != m.t_port {
        let (o, n) = (id.to_be(), m.t_port.to_be());
        checksum::l4_replace(ctx, csum_off, u64::from(o), u64::from(n), 2)?;
        packet::store(ctx, l4 + 4, &n)?;
    }
    let a = finish(ctx, cfg, s, &m, y, route, false)?;
    Ok(Verdict::new(Reason::Nat64Out, a))
}
