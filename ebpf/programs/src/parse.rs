//! Header parsing shared by every concern: Ethernet → IPv6 (with a bounded walk of extension
//! headers) or IPv4 → the upper-layer header's offset, protocol and fragment state; then ports
//! or ICMP fields.
//!
//! Fixed-offset headers are read with direct packet access (`packet::ptr_at`, bounds-checked for
//! the verifier); headers at variable offsets (after extension headers) with
//! `bpf_skb_load_bytes`, which keeps the verifier's job simple and costs nothing on the common
//! no-extension path. A packet that does not parse is `Reason::Malformed` (truncated or
//! inconsistent headers) or `Reason::Unsupported` (well-formed, but beyond what the datapath
//! parses: a very long extension chain).

use aya_ebpf::programs::TcContext;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};
use sixlane_common::{
    metrics::Reason,
    net::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN, proto},
};

use crate::{
    packet::{self, ptr_at},
    verdict::Res,
};

/// Extension headers walked before giving up. Real traffic carries at most two or three; a
/// longer chain is passed untouched rather than parsed at unbounded cost.
pub const MAX_EXT_HEADERS: usize = 6;

/// Fragment state of an IP packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// Not fragmented (an IPv6 atomic fragment, offset 0 without M, counts as this).
    No,
    /// First fragment: carries the upper-layer header, but not the whole payload.
    First,
    /// A later fragment: no upper-layer header.
    Later,
}

/// Where the upper layer starts and what it is.
#[derive(Clone, Copy)]
pub struct L3 {
    pub v6: bool,
    /// Offset of the upper-layer header from the start of the frame.
    pub l4_off: usize,
    /// Upper-layer protocol (after any extension headers).
    pub proto: u8,
    pub frag: Frag,
    /// Identification of the IPv6 fragment header (0 when not fragmented, or IPv4).
    pub frag_id: u32,
}

/// What a frame carries.
#[derive(Clone, Copy)]
pub enum Frame {
    Ip(L3),
    /// Not IP (ARP, LLDP, ...): never ours.
    Other,
}

/// Parses the frame down to the upper-layer header.
#[inline(always)]
pub fn frame(ctx: &TcContext) -> Res<Frame> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Reason::Malformed)?;
    // SAFETY: bounds-checked by ptr_at.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    match ether_type {
        ETH_P_IPV6 => ipv6(ctx).map(Frame::Ip),
        ETH_P_IP => ipv4(ctx).map(Frame::Ip),
        _ => Ok(Frame::Other),
    }
}

#[inline(always)]
fn ipv6(ctx: &TcContext) -> Res<L3> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN).ok_or(Reason::Malformed)?;
    // SAFETY: bounds-checked by ptr_at.
    let (version, plen, mut next) =
        unsafe { ((*ip).version(), (*ip).payload_len(), (*ip).next_hdr) };
    if version != 6 {
        return Err(Reason::Malformed);
    }
    // A payload length of 0 is a jumbogram / BIG TCP super-packet: the skb length rules.
    let avail = (ctx.len() as usize).saturating_sub(ETH_HLEN + IPV6_HLEN);
    if plen as usize > avail {
        return Err(Reason::Malformed);
    }
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut frag = Frag::No;
    let mut frag_id = 0;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                let h: [u8; 2] = ctx.load(off).map_err(|_| Reason::Malformed)?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            proto::AH => {
                let h: [u8; 2] = ctx.load(off).map_err(|_| Reason::Malformed)?;
                next = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            proto::FRAGMENT => {
                let h: [u8; 8] = ctx.load(off).map_err(|_| Reason::Malformed)?;
                next = h[0];
                frag_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let offset_flags = u16::from_be_bytes([h[2], h[3]]);
                let offset = offset_flags & 0xfff8;
                let more = offset_flags & 1 != 0;
                frag = if offset != 0 {
                    Frag::Later
                } else if more {
                    Frag::First
                } else {
                    Frag::No
                };
                off += 8;
                if frag == Frag::Later {
                    // No upper-layer header follows in a later fragment.
                    return Ok(L3 {
                        v6: true,
                        l4_off: off,
                        proto: next,
                        frag,
                        frag_id,
                    });
                }
            }
            _ => {
                if off > ctx.len() as usize {
                    return Err(Reason::Malformed);
                }
                return Ok(L3 {
                    v6: true,
                    l4_off: off,
                    proto: next,
                    frag,
                    frag_id,
                });
            }
        }
    }
    Err(Reason::Unsupported)
}

#[inline(always)]
fn ipv4(ctx: &TcContext) -> Res<L3> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or(Reason::Malformed)?;
    // SAFETY: bounds-checked by ptr_at.
    let (version, ihl, total, flags, offset, proto) = unsafe {
        (
            (*ip).version(),
            (*ip).ihl() as usize,
            (*ip).tot_len() as usize,
            (*ip).frag_flags(),
            (*ip).frag_offset(),
            (*ip).proto,
        )
    };
    if version != 4 || ihl < IPV4_HLEN {
        return Err(Reason::Malformed);
    }
    let avail = (ctx.len() as usize).saturating_sub(ETH_HLEN);
    // tot_len 0 marks a BIG TCP super-packet; otherwise it must fit and cover the header.
    if total != 0 && (total < ihl || total > avail) || ihl > avail {
        return Err(Reason::Malformed);
    }
    let more = flags & 0b001 != 0;
    let frag = if offset != 0 {
        Frag::Later
    } else if more {
        Frag::First
    } else {
        Frag::No
    };
    Ok(L3 {
        v6: false,
        l4_off: ETH_HLEN + ihl,
        proto,
        frag,
        frag_id: 0,
    })
}

/// Whether the upper-layer header the packet announces is there: ports for TCP/UDP/SCTP, the
/// fixed part for ICMP(v6). Later fragments carry none and pass.
#[inline(always)]
pub fn check_l4(ctx: &TcContext, l3: &L3) -> Res<()> {
    if l3.frag == Frag::Later {
        return Ok(());
    }
    let icmp_proto = if l3.v6 { proto::ICMPV6 } else { proto::ICMP };
    match l3.proto {
        proto::TCP | proto::UDP | proto::SCTP => ports(ctx, l3.l4_off).map(drop),
        p if p == icmp_proto => icmp(ctx, l3.l4_off).map(drop),
        _ => Ok(()),
    }
}

/// Source and destination ports (host order) of a TCP, UDP or SCTP header at `off`.
#[inline(always)]
pub fn ports(ctx: &TcContext, off: usize) -> Res<(u16, u16)> {
    let p: [u8; 4] = packet::read(ctx, off).ok_or(Reason::Malformed)?;
    Ok((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Type, code and (for echo messages) identifier of an ICMP or ICMPv6 header at `off`.
#[inline(always)]
pub fn icmp(ctx: &TcContext, off: usize) -> Res<(u8, u8, u16)> {
    let h: [u8; 6] = ctx.load(off).map_err(|_| Reason::Malformed)?;
    Ok((h[0], h[1], u16::from_be_bytes([h[4], h[5]])))
}
