//! Checksum updates. Rewrites are incremental (RFC 1624) through the kernel's csum helpers, which
//! also keep `skb->csum` right for CHECKSUM_COMPLETE packets and the pseudo-header seed right for
//! CHECKSUM_PARTIAL (GSO) ones; nothing here ever zeroes an IPv6 UDP checksum. Messages the
//! datapath builds or reshapes are summed over byte ranges of the packet ([`sum_range`]).
//!
//! Two representations meet here: `bpf_csum_diff` and the csum helpers work on native-order
//! sums; `sixlane_common::nat64::csum` on big-endian words ([`native`] converts).

use core::num::NonZeroUsize;

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::{bpf_csum_diff, bpf_skb_load_bytes},
    programs::TcContext,
};
use sixlane_common::{metrics::Reason, nat64::csum, net::proto};

use crate::{
    packet,
    verdict::{Res, fail},
};

/// Offset of the checksum field within an upper-layer header, if the protocol has one we
/// maintain (SCTP uses CRC32c over the payload, which address rewrites do not touch).
#[inline(always)]
pub const fn l4_csum_offset(l4_proto: u8) -> Option<usize> {
    match l4_proto {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMPV6 | proto::ICMP => Some(2),
        _ => None,
    }
}

/// Flags for `bpf_l4_csum_replace` on `l4_proto`: UDP's 0 means "no checksum" (IPv4 only) and a
/// computed 0 must be sent as 0xffff, which `BPF_F_MARK_MANGLED_0` does.
#[inline(always)]
pub const fn l4_flags(l4_proto: u8) -> u64 {
    if l4_proto == proto::UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    }
}

/// Folds a one's complement sum wider than 32 bits to 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// `bpf_csum_diff`: one's complement sum of `to` minus `from`, plus `seed` (native order), to
/// feed `l4_csum_replace(.., 0, diff, ..)`. Lengths must be multiples of 4; either side may be
/// empty.
#[inline(always)]
pub fn diff(from: &[u8], to: &[u8], seed: u32) -> Res<u32> {
    let (fp, fl) = if from.is_empty() {
        (core::ptr::null_mut(), 0)
    } else {
        (from.as_ptr() as *mut u32, from.len() as u32)
    };
    let (tp, tl) = if to.is_empty() {
        (core::ptr::null_mut(), 0)
    } else {
        (to.as_ptr() as *mut u32, to.len() as u32)
    };
    // SAFETY: pointers cover the given lengths; the helper only reads them.
    let r = unsafe { bpf_csum_diff(fp, fl, tp, tl, seed) };
    if r < 0 {
        Err(fail::HELPER)
    } else {
        Ok(r as u32)
    }
}

/// `bpf_l4_csum_replace`: the upper-layer checksum at `off` after `from` became `to` (sizes
/// and pseudo-header in `flags`).
#[inline(always)]
pub fn l4_replace(ctx: &TcContext, off: usize, from: u64, to: u64, flags: u64) -> Res<()> {
    ctx.l4_csum_replace(off, from, to, flags)
        .map_err(|_| fail::HELPER)
}

/// Rewrites a 16-byte IPv6 address at `addr_off` and updates the upper-layer checksum at
/// `csum_off` (the address is part of its pseudo-header). IPv6 has no header checksum.
///
/// The checksum's offset is never 0, and a `NonZeroUsize` keeps `None` a plain 0: an
/// `Option<usize>`'s `None` leaves its payload undefined, and LLVM may spill that undefined
/// register, which the verifier refuses (`!read_ok`).
#[inline(always)]
pub fn set_addr6(
    ctx: &TcContext,
    addr_off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
    csum_off: Option<NonZeroUsize>,
    l4_proto: u8,
) -> Res<()> {
    if let Some(csum_off) = csum_off {
        let d = diff(old, new, 0)?;
        l4_replace(
            ctx,
            csum_off.get(),
            0,
            u64::from(d),
            u64::from(BPF_F_PSEUDO_HDR) | l4_flags(l4_proto),
        )?;
    }
    packet::store(ctx, addr_off, new)
}

/// Rewrites a 16-bit field (a port, an ICMP identifier) at `off` and updates the upper-layer
/// checksum at `csum_off`. `old`/`new` are in network byte order as they sit in the packet.
#[inline(always)]
pub fn set_u16(
    ctx: &TcContext,
    off: usize,
    old_be: u16,
    new_be: u16,
    csum_off: Option<NonZeroUsize>,
    l4_proto: u8,
) -> Res<()> {
    if let Some(csum_off) = csum_off {
        l4_replace(
            ctx,
            csum_off.get(),
            u64::from(old_be),
            u64::from(new_be),
            2 | l4_flags(l4_proto),
        )?;
    }
    packet::store(ctx, off, &new_be)
}

/// The checksum difference from data summing to `old` to data summing to `new` (both
/// `csum::sum`-style accumulators), in the form `l4_csum_replace` takes: what `bpf_csum_diff`
/// would return for the same bytes, without the helper call every translated packet would
/// otherwise make for its pseudo-header change.
#[inline(always)]
pub fn delta(old: u32, new: u32) -> u64 {
    u64::from(native(csum::sub16(new, csum::fold(old))))
}

/// A sum of big-endian words (the library's representation) in the native-order form
/// `bpf_csum_diff` works with.
#[inline(always)]
pub fn native(be_sum: u32) -> u32 {
    u32::from(csum::fold(be_sum).to_be())
}

/// The checksum field's bytes for a native-order sum.
#[inline(always)]
pub fn field(acc: u32) -> [u8; 2] {
    (!csum::fold(acc)).to_ne_bytes()
}

/// Bytes summed per `bpf_csum_diff` call in [`sum_range`].
pub const CHUNK: usize = 64;

/// The buffer [`sum_range`] loads packet bytes into (in a scratch area); word-aligned so it can
/// be zeroed a word at a time (`crate::mem::zero`).
#[repr(C, align(4))]
#[derive(Clone, Copy)]
pub struct Chunk(pub [u8; CHUNK]);

/// One's complement sum (native order) of packet bytes `[off, end)` plus `seed`, read in
/// 64-byte chunks into `chunk` (the last one zero-padded, which RFC 1071 allows because every
/// chunk starts at an even distance from `off`). At most `CHUNKS` chunks: a longer range is
/// refused with `too_long`.
#[inline(always)]
pub fn sum_range<const CHUNKS: usize>(
    ctx: &TcContext,
    chunk: &mut Chunk,
    (off, end): (usize, usize),
    seed: u32,
    too_long: Reason,
) -> Res<u32> {
    if end < off || end - off > CHUNKS * CHUNK {
        return Err(too_long);
    }
    let r = sum_chunks::<CHUNKS>(ctx, chunk, off as u32, end as u32, seed);
    if r < 0 {
        Err(fail::MALFORMED)
    } else {
        Ok(r as u32)
    }
}

/// The loop of [`sum_range`], out of line so every caller shares one copy. Negative on a
/// failed load.
#[inline(never)]
fn sum_chunks<const CHUNKS: usize>(
    ctx: &TcContext,
    chunk: &mut Chunk,
    off: u32,
    end: u32,
    seed: u32,
) -> i64 {
    let skb = packet::skb(ctx).cast();
    let mut acc = seed;
    let mut pos = off;
    for _ in 0..CHUNKS {
        if pos >= end {
            break;
        }
        let left = end - pos;
        let r = if left >= CHUNK as u32 {
            // SAFETY: the chunk buffer holds CHUNK bytes.
            unsafe { bpf_skb_load_bytes(skb, pos, chunk.0.as_mut_ptr().cast(), CHUNK as u32) }
        } else {
            crate::mem::zero(chunk);
            // 1..=63 bytes, masked so the verifier sees a bounded, non-zero length.
            let n = (left.wrapping_sub(1) & (CHUNK as u32 - 1)) + 1;
            // SAFETY: the chunk buffer holds CHUNK ≥ n bytes.
            unsafe { bpf_skb_load_bytes(skb, pos, chunk.0.as_mut_ptr().cast(), n) }
        };
        if r != 0 {
            return -1;
        }
        match diff(&[], &chunk.0, acc) {
            Ok(v) => acc = v,
            Err(_) => return -1,
        }
        pos += CHUNK as u32;
    }
    i64::from(acc)
}
