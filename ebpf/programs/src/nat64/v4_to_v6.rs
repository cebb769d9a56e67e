//! IPv4 → IPv6 (RFC 7915 §4, RFC 6146 §3.5 inbound): replies to pool addresses on the node's
//! IPv4 uplink are matched to their session and delivered to the pod as IPv6 from Pref64::Z;
//! packets to a static binding open their session and go to its pod the same way.
//! Anything that is not NAT64 traffic (the node's own connections share the pool address) is
//! left to the kernel.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, bpf_adj_room_mode::BPF_ADJ_ROOM_NET},
    programs::TcContext,
};
use sixlane_common::{
    metrics::Reason,
    nat64::{
        addr, csum, header, icmp,
        maps::{CFG_CLAMP_MSS, CFG_EIF_UDP, Config},
    },
    net::{ETH_HLEN, ETH_P_IPV6, HDR_DIFF, IPV4_HLEN, IPV6_HLEN, icmp4, icmp6, proto, tcp_flags},
};

use super::{
    TOO_LONG, area,
    area::{Area, Frame6, frame_len},
    hold, icmp_error, mss, reply, sane, state,
};
use crate::{
    checksum,
    forward::{self, Ports, Route},
    packet,
    parse::{Frag, L3},
    verdict::{Res, Verdict},
};

/// Chunks covering a UDP datagram whose zero IPv4 checksum must be computed (4 KiB).
const CHUNKS_UDP: usize = 64;

/// Handles an IPv4 packet on the uplink. [`Verdict::NOT_OURS`]: not NAT64 traffic.
#[inline(never)]
pub fn run(ctx: &TcContext, cfg: &Config, l3: &L3) -> Verdict {
    let Some(s) = area::get() else {
        return Verdict::NOT_OURS;
    };
    if packet::load_into_fast(ctx, ETH_HLEN, &mut s.hdr4).is_err() {
        return Verdict::NOT_OURS;
    }
    s.ip4.parse_into(&s.hdr4);
    if cfg.pool_index(&s.ip4.dst).is_none() {
        return Verdict::NOT_OURS;
    }
    match l3.proto {
        proto::TCP | proto::UDP => transport(ctx, cfg, s, l3),
        proto::ICMP => icmp_in(ctx, cfg, s, l3),
        _ => Verdict::NOT_OURS,
    }
}

#[inline(always)]
fn transport(ctx: &TcContext, cfg: &Config, s: &mut Area, l3: &L3) -> Verdict {
    if l3.frag == Frag::Later {
        // No ports to tell NAT64 traffic from the node's own: the kernel's.
        return Verdict::NOT_OURS;
    }
    let l4 = l3.l4_off;
    let Ok(p) = packet::load_fast::<[u8; 4]>(ctx, l4) else {
        return Verdict::NOT_OURS;
    };
    let (z_port, t_port) = (
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    );
    // Outside the dynamic range only static bindings are NAT64's (looked up in `inbound`).
    let static_only = !state::range_of(cfg, l3.proto).contains(t_port);
    if static_only && cfg.statics == 0 {
        return Verdict::NOT_OURS;
    }
    let tcp_flags = if l3.proto == proto::TCP {
        packet::load_fast::<[u8; 2]>(ctx, l4 + 12)
            .map(|b| b[1])
            .unwrap_or(0)
    } else {
        0
    };
    let f = &mut s.inflow;
    f.proto = l3.proto;
    f.tcp_flags = tcp_flags;
    f.eif = cfg.flags & CFG_EIF_UDP != 0;
    f.static_only = static_only;
    f.opens = true;
    f.opened = false;
    f.t_port = t_port;
    f.z_port = z_port;
    f.t_addr = s.ip4.dst;
    f.z = s.ip4.src;
    let mut slot = core::mem::MaybeUninit::uninit();
    match state::inbound(&mut s.keys, &mut s.inflow, &mut slot) {
        state::Inbound::Session => {}
        state::Inbound::Unsolicited => return hold::unsolicited(ctx, cfg, s, l4 as u32),
        state::Inbound::NotOurs => return Verdict::NOT_OURS,
    }
    // SAFETY: `inbound` initialised the slot when it found a session.
    translate(ctx, cfg, s, l3, unsafe { slot.assume_init_ref() })
}

#[inline(always)]
fn icmp_in(ctx: &TcContext, cfg: &Config, s: &mut Area, l3: &L3) -> Verdict {
    if l3.frag != Frag::No {
        return Verdict::NOT_OURS;
    }
    let l4 = l3.l4_off;
    let Ok(h) = packet::load::<[u8; 6]>(ctx, l4) else {
        return Verdict::NOT_OURS;
    };
    match h[0] {
        ty @ (icmp4::ECHO_REPLY | icmp4::ECHO_REQUEST) => {
            let id = u16::from_be_bytes([h[4], h[5]]);
            let static_only = !cfg.ports[2].contains(id);
            let request = ty == icmp4::ECHO_REQUEST;
            // Echo requests are the node's to answer unless a static binding maps their
            // identifier (`inbound` looks it up); replies with an identifier outside the
            // dynamic range may answer a pod's ping that left through one.
            let candidate = if static_only {
                cfg.statics != 0 && h[1] == 0
            } else {
                !request
            };
            if !candidate {
                return Verdict::NOT_OURS;
            }
            let f = &mut s.inflow;
            f.proto = proto::ICMP;
            f.tcp_flags = 0;
            f.eif = false;
            f.static_only = static_only;
            f.opens = request;
            f.opened = false;
            f.t_port = id;
            f.z_port = 0;
            f.t_addr = s.ip4.dst;
            f.z = s.ip4.src;
            let mut slot = core::mem::MaybeUninit::uninit();
            // Replies to the node's own pings share the identifier space: a miss is theirs.
            if state::inbound(&mut s.keys, &mut s.inflow, &mut slot) != state::Inbound::Session {
                return Verdict::NOT_OURS;
            }
            // SAFETY: `inbound` initialised the slot when it found a session.
            translate(ctx, cfg, s, l3, unsafe { slot.assume_init_ref() })
        }
        t if icmp::is_error4(t) => icmp_error::v4_to_v6(ctx, cfg, s, l4 as u32),
        _ => Verdict::NOT_OURS,
    }
}

/// Translates a packet of session `r` (RFC 7915 §4.1) and sends it to the pod.
#[inline(never)]
fn translate(ctx: &TcContext, cfg: &Config, s: &mut Area, l3: &L3, r: &state::Reverse) -> Verdict {
    match translate_inner(ctx, cfg, s, l3, r) {
        Ok(d) => d,
        Err(reason) => Verdict::drop(reason),
    }
}

#[inline(always)]
fn translate_inner(
    ctx: &TcContext,
    cfg: &Config,
    s: &mut Area,
    l3: &L3,
    r: &state::Reverse,
) -> Res<Verdict> {
    sane::ipv4(ctx, ETH_HLEN, &s.hdr4, s.ip4.ihl)?;
    if l3.frag != Frag::No {
        return Err(Reason::Nat64Fragment);
    }
    if !forward::may_forward(s.ip4.ttl) {
        // The translator is a router on the way to the pod.
        let e = reply::Error::new(icmp4::TIME_EXCEEDED, 0, 0, Reason::Nat64TtlExceeded);
        return Ok(reply::icmp4_error(ctx, s, &e));
    }
    let l4_len = l4_len(ctx, s)?;
    sane::transport(ctx, l3.proto, l3.l4_off, l4_len)?;
    // Z' (the peer's IPv6 form) lives in s.a6 from here on.
    addr::embed_into(&cfg.prefix, cfg.prefix_len, &s.ip4.src, &mut s.a6);
    let route = match route(ctx, s, r, l4_len) {
        Route::TooBig(mtu) => {
            // Fragmentation Needed towards the IPv4 sender, sized for the IPv6 hop.
            let info = mtu.saturating_sub(HDR_DIFF as u32).min(0xffff);
            let e = reply::Error::new(
                icmp4::DEST_UNREACH,
                icmp4::FRAG_NEEDED,
                info,
                Reason::Nat64TooBig,
            );
            return Ok(reply::icmp4_error(ctx, s, &e));
        }
        Route::None => return Err(Reason::Nat64NoRoute),
        route => route,
    };
    // TCP and UDP ports go out with the new headers.
    let ports = l3.proto != proto::ICMP;
    let mut zero_udp = false;
    if ports {
        zero_udp = transport_header(ctx, cfg, s, r, l3)?;
    } else {
        echo(ctx, s, r, l3.l4_off, l4_len)?;
    }
    ip_header(ctx, cfg, s, r, l4_len)?;
    if zero_udp {
        udp_checksum(ctx, s, r, l4_len)?;
    }
    send(ctx, s, r, route, ports)
}

/// The IPv4 payload's length (the upper-layer length of the IPv6 packet), checked against the
/// header and the frame.
#[inline(always)]
fn l4_len(ctx: &TcContext, s: &Area) -> Res<u16> {
    let (ihl, total) = (u16::from(s.ip4.ihl), s.ip4.total_len);
    if total < ihl || usize::from(total) + ETH_HLEN > ctx.len() as usize {
        return Err(Reason::Nat64Malformed);
    }
    Ok(total - ihl)
}

/// The route to the pod for the translation (`l4_len` bytes of payload): straight back through
/// the veth of a local pod's session, else the node's routes (other sessions, links not known).
#[inline(always)]
fn route(ctx: &TcContext, s: &mut Area, r: &state::Reverse, l4_len: u16) -> Route {
    let v6_len = if packet::gso_size(ctx) != 0 {
        0
    } else {
        (IPV6_HLEN as u16).saturating_add(l4_len)
    };
    forward::pod_link(ctx, &mut s.fib, r.pod_if, v6_len)
        .unwrap_or_else(|| forward::lookup6(ctx, &mut s.fib, &s.a6, &r.x_addr, Ports::NONE, v6_len))
}

/// ICMP Echo Reply (or Request, through a static binding) → its ICMPv6 counterpart with the
/// session's identifier, in place: the pseudo-header joins the checksum, the type and
/// identifier change.
#[inline(always)]
fn echo(ctx: &TcContext, s: &Area, r: &state::Reverse, l4: usize, l4_len: u16) -> Res<()> {
    let h: [u8; 6] = packet::load(ctx, l4)?;
    let ty6 = if h[0] == icmp4::ECHO_REQUEST {
        icmp6::ECHO_REQUEST
    } else {
        icmp6::ECHO_REPLY
    };
    let csum_off = l4 + 2;
    let d = checksum::delta(
        0,
        csum::pseudo6(&s.a6, &r.x_addr, u32::from(l4_len), proto::ICMPV6),
    );
    checksum::l4_replace(ctx, csum_off, 0, d, 0)?;
    let old = u16::from_ne_bytes([h[0], h[1]]);
    let new = u16::from_ne_bytes([ty6, h[1]]);
    checksum::l4_replace(ctx, csum_off, u64::from(old), u64::from(new), 2)?;
    packet::store(ctx, l4, &ty6)?;
    let (id, nid) = ([h[4], h[5]], r.x_port.to_be_bytes());
    if id != nid {
        checksum::l4_replace(
            ctx,
            csum_off,
            u64::from(u16::from_ne_bytes(id)),
            u64::from(u16::from_ne_bytes(nid)),
            2,
        )?;
        packet::store(ctx, l4 + 4, &nid)?;
    }
    Ok(())
}

/// TCP or UDP: the MSS clamped on a SYN, the checksum updated for the new pseudo-header and
/// destination port, the ports put in `s.f6.ports` to go out with the new headers. True for a
/// UDP datagram without a checksum, which IPv6 needs computed ([`udp_checksum`]).
#[inline(always)]
fn transport_header(
    ctx: &TcContext,
    cfg: &Config,
    s: &mut Area,
    r: &state::Reverse,
    l3: &L3,
) -> Res<bool> {
    let (proto, l4) = (l3.proto, l3.l4_off);
    let csum_off = l4 + if proto == proto::TCP { 16 } else { 6 };
    let mangled = if proto == proto::UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let h: [u8; 14] = if proto == proto::TCP {
        packet::load_fast(ctx, l4)?
    } else {
        let u: [u8; 8] = packet::load_fast(ctx, l4)?;
        [
            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], 0, 0, 0, 0, 0, 0,
        ]
    };
    let zero_udp = proto == proto::UDP && h[6] == 0 && h[7] == 0;
    if proto == proto::TCP && h[13] & tcp_flags::SYN != 0 && cfg.flags & CFG_CLAMP_MSS != 0 {
        // The pod's segments leave through this uplink as IPv4 and cross the IPv4 path: the
        // same bound as the pod's own SYN.
        let mtu = packet::mtu(ctx, 0);
        mss::clamp(ctx, l4, u16::from(h[12] >> 4) * 4, cfg.mss_max(mtu))?;
    }
    if !zero_udp {
        let d = checksum::delta(
            csum::sum(&s.ip4.dst, csum::sum(&s.ip4.src, 0)),
            csum::sum(&s.a6, csum::sum(&r.x_addr, 0)),
        );
        checksum::l4_replace(ctx, csum_off, 0, d, u64::from(BPF_F_PSEUDO_HDR) | mangled)?;
    }
    let (t_port, new) = ([h[2], h[3]], r.x_port.to_be_bytes());
    if t_port != new {
        if !zero_udp {
            checksum::l4_replace(
                ctx,
                csum_off,
                u64::from(u16::from_ne_bytes(t_port)),
                u64::from(u16::from_ne_bytes(new)),
                2 | mangled,
            )?;
        } else {
            // The checksum computed later reads the datagram: the port must be in it.
            packet::store(ctx, l4 + 2, &new)?;
        }
    }
    // Written with the new headers.
    s.f6.ports = [h[0], h[1], new[0], new[1]];
    Ok(zero_udp)
}

/// Makes room for the IPv6 header (IPv4 options are not translated, RFC 7915 §4.1) and builds
/// it, with the Ethernet type, in `s.f6` for [`send`].
#[inline(always)]
fn ip_header(
    ctx: &TcContext,
    cfg: &Config,
    s: &mut Area,
    r: &state::Reverse,
    l4_len: u16,
) -> Res<()> {
    packet::change_proto(ctx, ETH_P_IPV6)?;
    let ihl = usize::from(s.ip4.ihl);
    if ihl > IPV4_HLEN {
        let opts = (ihl - IPV4_HLEN) as i32;
        packet::adjust_room(ctx, -opts, BPF_ADJ_ROOM_NET)?;
    }
    header::write6(
        &mut s.f6.ip,
        cfg.traffic_class_from(s.ip4.tos),
        l4_len,
        header::proto_to_v6(s.ip4.proto),
        s.ip4.ttl.saturating_sub(1),
        &s.a6,
        &r.x_addr,
    );
    s.f6.eth[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    Ok(())
}

/// RFC 7915 §4.5: IPv6 needs a UDP checksum; computed over the whole (translated) datagram.
#[inline(always)]
fn udp_checksum(ctx: &TcContext, s: &mut Area, r: &state::Reverse, l4_len: u16) -> Res<()> {
    let off = ETH_HLEN + IPV6_HLEN;
    let seed = checksum::native(csum::pseudo6(
        &s.a6,
        &r.x_addr,
        u32::from(l4_len),
        proto::UDP,
    ));
    let acc = checksum::sum_range::<CHUNKS_UDP>(
        ctx,
        &mut s.chunk,
        (off, off + usize::from(l4_len)),
        seed,
        TOO_LONG,
    )?;
    let mut c = checksum::field(acc);
    if c == [0, 0] {
        c = [0xff, 0xff];
    }
    packet::store(ctx, off + 6, &c)
}

/// Writes the new headers (with the ports, when `ports`) and sends the packet to the pod: a local
/// pod's own session still routed out of its veth goes straight into the pod.
#[inline(always)]
fn send(
    ctx: &TcContext,
    s: &mut Area,
    r: &state::Reverse,
    route: Route,
    ports: bool,
) -> Res<Verdict> {
    let route = if forward::peer_of(route, &s.fib, r.pod_if) && forward::pod_fast_path() {
        Route::Peer
    } else {
        route
    };
    let len = frame_len::<Frame6>(ports);
    let a = forward::send_frame(ctx, &s.fib, route, &mut s.f6, len)?;
    let reason = if s.inflow.opened {
        Reason::Nat64InStatic
    } else if route == Route::Peer {
        Reason::Nat64InPeer
    } else {
        Reason::Nat64In
    };
    Ok(Verdict::new(reason, a))
}
