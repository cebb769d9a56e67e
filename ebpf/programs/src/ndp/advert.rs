//! The Neighbor Advertisement (RFC 4861 §7.2.4) written in place of a solicitation and sent
//! back out of the uplink it arrived on.
//!
//! It comes from the target address, as its owner would send it: Override set, because this
//! node is where the address lives on this link (not an anycast address, not a proxy standing
//! in for a host that might answer itself: §7.2.7's proxies clear it so the owner's own
//! answer wins, and there is no other owner here); Router clear. A solicitation with a source
//! address is answered to it (Solicited set, Ethernet destination its sender); a Duplicate
//! Address Detection probe to all-nodes (Solicited clear), defending the address. The Target
//! Link-Layer Address option, the uplink's MAC, is always included.

use aya_ebpf::programs::TcContext;
use sixlane_common::{
    metrics::Reason,
    ndp::{
        ALL_NODES, HOP_LIMIT, ND_HLEN, NEIGHBOR_ADVERT, OPT_TARGET_LLA, OPT_UNIT, Owned,
        multicast_mac, na_flags,
    },
    net::{ETH_P_IPV6, proto},
};

use super::area::{Area, HEAD_LEN};
use crate::{forward, icmp6::Icmp6, mem, packet, verdict::Res};

/// The advertisement's ICMPv6 length: the fixed part and one option.
const NA_LEN: usize = ND_HLEN + OPT_UNIT;

/// Turns the solicitation in `s.ns` into the advertisement for its target, from `owned`'s
/// uplink; the tc action that sends it.
#[inline(always)]
pub fn answer(ctx: &TcContext, s: &mut Area, owned: &Owned, dad: bool) -> Res<i32> {
    let na = &mut s.na;
    let flags = if dad {
        na.dst = ALL_NODES;
        na.dst_mac = multicast_mac(&ALL_NODES);
        na_flags::OVERRIDE
    } else {
        mem::copy(&mut na.dst, &s.ns.src);
        mem::copy(&mut na.dst_mac, &s.ns.src_mac);
        na_flags::SOLICITED | na_flags::OVERRIDE
    };
    mem::copy(&mut na.src_mac, &owned.mac);
    na.ether_type = ETH_P_IPV6.to_be_bytes();
    let l = (NA_LEN as u16).to_be_bytes();
    na.ip = [0x60, 0, 0, 0, l[0], l[1], proto::ICMPV6, HOP_LIMIT];
    mem::copy(&mut na.src, &s.ns.target);
    mem::copy(&mut na.target, &s.ns.target);
    let m = owned.mac;
    s.tlla = [OPT_TARGET_LLA, 1, m[0], m[1], m[2], m[3], m[4], m[5]];

    packet::set_len(ctx, (HEAD_LEN + OPT_UNIT) as u32)?;
    packet::store(ctx, 0, &s.na)?;
    packet::store(ctx, HEAD_LEN, &s.tlla)?;
    let icmp = Icmp6 {
        ty: NEIGHBOR_ADVERT,
        code: 0,
        info: flags,
        len: NA_LEN as u16,
    };
    icmp.write(ctx, &mut s.chunk, (&s.na.src, &s.na.dst), Reason::NdpFailed)?;
    forward::redirect_out(ctx)
}
