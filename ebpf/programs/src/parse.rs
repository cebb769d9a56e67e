//! Header parsing shared by every concern: Ethernet → IPv6 (with a bounded walk of extension
//! headers) or IPv4 → the upper-layer header's offset, protocol and fragment state; then ports
//! or ICMP fields.
//!
//! Fixed-offset headers are read with direct packet access (`ptr_at`, bounds-checked for the
//! verifier); headers at variable offsets (after extension headers) with `bpf_skb_load_bytes`,
//! which keeps the verifier's job simple and costs nothing on the common no-extension path.

use aya_ebpf::programs::TcContext;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};
use sixlane_common::net::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN, proto};

/// Extension headers walked before giving up. Real traffic carries at most two or three; a
/// longer chain is passed untouched rather than parsed at unbounded cost.
pub const MAX_EXT_HEADERS: usize = 6;

/// Why a packet could not be parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Truncated or inconsistent headers.
    Malformed,
    /// Well-formed but beyond what the datapath parses (a very long extension chain).
    Unsupported,
}

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

/// A `T` at `offset`: straight from the linear packet data when it is there (no helper call),
/// else through `bpf_skb_load_bytes` (headers in paged data).
#[inline(always)]
pub fn read<T: Copy>(ctx: &TcContext, offset: usize) -> Option<T> {
    if let Some(p) = ptr_at::<T>(ctx, offset) {
        // SAFETY: bounds-checked by ptr_at; `T` is plain bytes read unaligned.
        return Some(unsafe { p.read_unaligned() });
    }
    ctx.load(offset).ok()
}

/// Largest offset read with direct packet access. Beyond it, [`read`] falls back to
/// `bpf_skb_load_bytes`.
pub const MAX_DIRECT_OFFSET: usize = 0x3fff;

/// Pointer to a `T` at `offset` in the linear packet data, if the whole `T` is inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    // LLVM turns `p + 1 > end` into `p >= end`, which the verifier does not accept as a bound
    // for a variable offset: read at least two bytes.
    const {
        assert!(
            core::mem::size_of::<T>() >= 2,
            "ptr_at needs a type of 2 bytes or more"
        );
    };
    // Gives the verifier an explicit range for `offset`: an offset read back from the stack
    // (after a spill, or from a struct filled by a helper) may have lost its bounds, and pointer
    // arithmetic with an unbounded register is refused.
    if offset > MAX_DIRECT_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Parses the frame down to the upper-layer header.
#[inline(always)]
pub fn frame(ctx: &TcContext) -> Result<Frame, Error> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Error::Malformed)?;
    // SAFETY: bounds-checked by ptr_at.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    match ether_type {
        ETH_P_IPV6 => ipv6(ctx).map(Frame::Ip),
        ETH_P_IP => ipv4(ctx).map(Frame::Ip),
        _ => Ok(Frame::Other),
    }
}

#[inline(always)]
fn ipv6(ctx: &TcContext) -> Result<L3, Error> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN).ok_or(Error::Malformed)?;
    // SAFETY: bounds-checked by ptr_at.
    let (version, plen, mut next) =
        unsafe { ((*ip).version(), (*ip).payload_len(), (*ip).next_hdr) };
    if version != 6 {
        return Err(Error::Malformed);
    }
    // A payload length of 0 is a jumbogram / BIG TCP super-packet: the skb length rules.
    let avail = (ctx.len() as usize).saturating_sub(ETH_HLEN + IPV6_HLEN);
    if plen as usize > avail {
        return Err(Error::Malformed);
    }
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut frag = Frag::No;
    let mut frag_id = 0;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                let h: [u8; 2] = ctx.load(off).map_err(|_| Error::Malformed)?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            proto::AH => {
                let h: [u8; 2] = ctx.load(off).map_err(|_| Error::Malformed)?;
                next = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            proto::FRAGMENT => {
                let h: [u8; 8] = ctx.load(off).map_err(|_| Error::Malformed)?;
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
                    return Err(Error::Malformed);
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
    Err(Error::Unsupported)
}

#[inline(always)]
fn ipv4(ctx: &TcContext) -> Result<L3, Error> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or(Error::Malformed)?;
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
        return Err(Error::Malformed);
    }
    let avail = (ctx.len() as usize).saturating_sub(ETH_HLEN);
    // tot_len 0 marks a BIG TCP super-packet; otherwise it must fit and cover the header.
    if total != 0 && (total < ihl || total > avail) || ihl > avail {
        return Err(Error::Malformed);
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
pub fn check_l4(ctx: &TcContext, l3: &L3) -> Result<(), Error> {
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
pub fn ports(ctx: &TcContext, off: usize) -> Result<(u16, u16), Error> {
    let p: [u8; 4] = read(ctx, off).ok_or(Error::Malformed)?;
    Ok((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Type, code and (for echo messages) identifier of an ICMP or ICMPv6 header at `off`.
#[inline(always)]
pub fn icmp(ctx: &TcContext, off: usize) -> Result<(u8, u8, u16), Error> {
    let h: [u8; 6] = ctx.load(off).map_err(|_| Error::Malformed)?;
    Ok((h[0], h[1], u16::from_be_bytes([h[4], h[5]])))
}
