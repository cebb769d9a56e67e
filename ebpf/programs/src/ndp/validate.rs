//! RFC 4861 §7.1.1: what makes a Neighbor Solicitation valid. A node must silently discard an
//! invalid one; here it is passed on untouched (the kernel discards it) and counted by reason.

use aya_ebpf::programs::TcContext;
use sixlane_common::{
    metrics::Reason,
    nat64::csum,
    ndp::{HOP_LIMIT, ND_HLEN, OPT_SOURCE_LLA, OPT_UNIT, is_solicited_node},
    net::{ETH_HLEN, IPV6_HLEN, proto},
};

use super::area::{Area, HEAD_LEN};
use crate::{checksum, mem, packet};

/// Longest solicitation checksummed and answered here: a real one is 24 bytes with a source
/// link-layer address and a nonce option at most (40); a longer one is passed to the kernel.
const MAX_LEN: usize = 256;
const CHUNKS: usize = MAX_LEN / checksum::CHUNK;
/// Options that fit in [`MAX_LEN`]: the option walk never stops short of the end.
const MAX_OPTIONS: usize = (MAX_LEN - ND_HLEN) / OPT_UNIT;

/// Loads the solicitation into `s.ns` and checks it: whether it is a Duplicate Address
/// Detection probe (unspecified source), or why it is invalid.
#[inline(always)]
pub fn solicitation(ctx: &TcContext, s: &mut Area) -> Result<bool, Reason> {
    if (ctx.len() as usize) < HEAD_LEN {
        return Err(Reason::NdpTooShort);
    }
    // SAFETY: `s.ns` is HEAD_LEN bytes of plain data.
    unsafe { packet::load_raw(ctx, 0, (&raw mut s.ns).cast(), HEAD_LEN as u32) }
        .map_err(|_| Reason::NdpTooShort)?;
    let ns = &s.ns;
    let len = usize::from(u16::from_be_bytes([ns.ip[4], ns.ip[5]]));
    if len < ND_HLEN {
        return Err(Reason::NdpTooShort);
    }
    if ns.ip[7] != HOP_LIMIT {
        return Err(Reason::NdpBadHopLimit);
    }
    if ns.icmp[1] != 0 {
        return Err(Reason::NdpBadCode);
    }
    if len > MAX_LEN {
        return Err(Reason::Unsupported);
    }
    let start = ETH_HLEN + IPV6_HLEN;
    let seed = checksum::native(csum::pseudo6(&ns.src, &ns.dst, len as u32, proto::ICMPV6));
    let sum = checksum::sum_range::<CHUNKS>(
        ctx,
        &mut s.chunk,
        (start, start + len),
        seed,
        Reason::Unsupported,
    )?;
    if csum::fold(sum) != 0xffff {
        return Err(Reason::NdpBadChecksum);
    }
    let ns = &s.ns;
    if ns.target[0] == 0xff {
        return Err(Reason::NdpMulticastTarget);
    }
    let dad = mem::is_zero16(&ns.src);
    if dad && !is_solicited_node(&ns.dst) {
        return Err(Reason::NdpDadNotSolicitedNode);
    }
    options(ctx, start + ND_HLEN, start + len, dad)?;
    Ok(dad)
}

/// Walks the options in `[off, end)`: each must have a length and end inside the message; a
/// DAD probe must carry no source link-layer address.
#[inline(always)]
fn options(ctx: &TcContext, mut off: usize, end: usize, dad: bool) -> Result<(), Reason> {
    for _ in 0..MAX_OPTIONS {
        if off >= end {
            return Ok(());
        }
        let o: [u8; 2] = ctx.load(off).map_err(|_| Reason::NdpBadOption)?;
        let next = off + usize::from(o[1]) * OPT_UNIT;
        if o[1] == 0 || next > end {
            return Err(Reason::NdpBadOption);
        }
        if dad && o[0] == OPT_SOURCE_LLA {
            return Err(Reason::NdpDadSourceLla);
        }
        off = next;
    }
    if off >= end {
        Ok(())
    } else {
        Err(Reason::Unsupported)
    }
}
