//! Packet access helpers for the NAT64 stages: loads and stores that map helper failures to
//! counted reasons, checksums over byte ranges of the packet, device MTUs.

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{
        bpf_check_mtu, bpf_csum_diff, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes,
    },
    programs::TcContext,
};
use sixlane_common::{metrics::Reason, nat64::csum};

use super::scratch::Scratch;

pub type Res<T> = Result<T, Reason>;

/// tc verdicts as the program returns them (the bindings' type differs between the BPF and
/// host builds).
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

#[inline(always)]
pub fn load<T>(ctx: &TcContext, off: usize) -> Res<T> {
    ctx.load(off).map_err(|_| Reason::Nat64Malformed)
}

/// [`load`] for the per-packet path: [`crate::parse::read`], straight from the linear packet
/// data when it is there (no helper call), else through `bpf_skb_load_bytes` (paged data).
/// Only where the offset's bounds are plain to the verifier (it loses them for offsets derived
/// after a check).
#[inline(always)]
pub fn load_fast<T: Copy>(ctx: &TcContext, off: usize) -> Res<T> {
    crate::parse::read(ctx, off).ok_or(Reason::Nat64Malformed)
}

/// [`load_into`] for the per-packet path (see [`load_fast`]).
#[inline(always)]
pub fn load_into_fast<const N: usize>(ctx: &TcContext, off: usize, buf: &mut [u8; N]) -> Res<()> {
    if let Some(p) = crate::parse::ptr_at::<[u8; N]>(ctx, off) {
        // SAFETY: `ptr_at` checked the N bytes are in the linear data; a byte array has no
        // alignment to respect.
        crate::mem::copy(buf, unsafe { &*p });
        return Ok(());
    }
    load_into(ctx, off, buf)
}

/// Loads `N` bytes at `off` into `buf` (a scratch buffer).
#[inline(always)]
pub fn load_into<const N: usize>(ctx: &TcContext, off: usize, buf: &mut [u8; N]) -> Res<()> {
    // SAFETY: `buf` holds N bytes.
    let r = unsafe {
        bpf_skb_load_bytes(
            skb(ctx).cast(),
            off as u32,
            buf.as_mut_ptr().cast(),
            N as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Reason::Nat64Malformed)
    }
}

#[inline(always)]
pub fn store<T>(ctx: &TcContext, off: usize, v: &T) -> Res<()> {
    store_first(ctx, off, v, core::mem::size_of::<T>())
}

/// Stores the first `len` bytes of `v` (at most all of it) at `off`.
#[inline(always)]
pub fn store_first<T>(ctx: &TcContext, off: usize, v: &T, len: usize) -> Res<()> {
    let len = len.min(core::mem::size_of::<T>());
    // SAFETY: `v` is valid for reads of `len` ≤ size_of::<T>() bytes; the helper copies them.
    let r = unsafe {
        bpf_skb_store_bytes(
            skb(ctx).cast(),
            off as u32,
            (v as *const T).cast(),
            len as u32,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Reason::Nat64Error)
    }
}

#[inline(always)]
pub fn skb(ctx: &TcContext) -> *mut __sk_buff {
    ctx.skb.skb
}

/// Index of the device the packet arrived on.
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the context the kernel passed in.
    unsafe { (*skb(ctx)).ifindex }
}

/// GSO segment size, 0 when the packet is not a GSO super-packet.
#[inline(always)]
pub fn gso_size(ctx: &TcContext) -> u32 {
    // SAFETY: as above.
    unsafe { (*skb(ctx)).gso_size }
}

/// MTU of device `ifindex` (0 = the packet's device).
#[inline(always)]
pub fn mtu(ctx: &TcContext, ifindex: u32) -> u32 {
    let mut mtu: u32 = 0;
    // SAFETY: `mtu` is a valid out-pointer; the helper only reads the skb.
    unsafe { bpf_check_mtu(skb(ctx).cast(), ifindex, &mut mtu, 0, 0) };
    if mtu == 0 { 1500 } else { mtu }
}

/// Trims the packet to `len` bytes (also clears its GSO state).
#[inline(always)]
pub fn truncate(ctx: &TcContext, len: u32) -> Res<()> {
    // SAFETY: plain helper call on our context.
    let r = unsafe { bpf_skb_change_tail(skb(ctx), len, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(Reason::Nat64Error)
    }
}

/// `bpf_csum_diff`: one's complement sum of `to` minus `from`, plus `seed` (native order).
/// Lengths must be multiples of 4.
#[inline(always)]
pub fn csum_diff(from: &[u8], to: &[u8], seed: u32) -> Res<u32> {
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
        Err(Reason::Nat64Error)
    } else {
        Ok(r as u32)
    }
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

/// Bytes summed per `bpf_csum_diff` call in [`sum_range`] (the scratch chunk's size).
pub const CHUNK: usize = 64;

/// One's complement sum (native order) of packet bytes `[off, end)` plus `seed`, read in
/// 64-byte chunks (the last one zero-padded, which RFC 1071 allows because every chunk starts
/// at an even distance from `off`). At most `CHUNKS` chunks: a longer range is refused.
#[inline(always)]
pub fn sum_range<const CHUNKS: usize>(
    ctx: &TcContext,
    s: &mut Scratch,
    off: usize,
    end: usize,
    seed: u32,
) -> Res<u32> {
    if end < off || end - off > CHUNKS * CHUNK {
        return Err(Reason::Nat64UdpChecksum);
    }
    let r = sum_chunks::<CHUNKS>(ctx, s, off as u32, end as u32, seed);
    if r < 0 {
        Err(Reason::Nat64Malformed)
    } else {
        Ok(r as u32)
    }
}

/// The loop of [`sum_range`], out of line so every caller shares one copy. Negative on a
/// failed load.
#[inline(never)]
fn sum_chunks<const CHUNKS: usize>(
    ctx: &TcContext,
    s: &mut Scratch,
    off: u32,
    end: u32,
    seed: u32,
) -> i64 {
    let mut acc = seed;
    let mut pos = off;
    for _ in 0..CHUNKS {
        if pos >= end {
            break;
        }
        let left = end - pos;
        let r = if left >= CHUNK as u32 {
            // SAFETY: the chunk buffer holds CHUNK bytes.
            unsafe {
                bpf_skb_load_bytes(
                    skb(ctx).cast(),
                    pos,
                    s.chunk.0.as_mut_ptr().cast(),
                    CHUNK as u32,
                )
            }
        } else {
            crate::mem::zero(&mut s.chunk);
            // 1..=63 bytes, masked so the verifier sees a bounded, non-zero length.
            let n = (left.wrapping_sub(1) & (CHUNK as u32 - 1)) + 1;
            // SAFETY: the chunk buffer holds CHUNK ≥ n bytes.
            unsafe { bpf_skb_load_bytes(skb(ctx).cast(), pos, s.chunk.0.as_mut_ptr().cast(), n) }
        };
        if r != 0 {
            return -1;
        }
        match csum_diff(&[], &s.chunk.0, acc) {
            Ok(v) => acc = v,
            Err(_) => return -1,
        }
        pos += CHUNK as u32;
    }
    i64::from(acc)
}

/// Folds a native-order sum and returns the checksum field's bytes.
#[inline(always)]
pub fn finish(acc: u32) -> [u8; 2] {
    (!csum::fold(acc)).to_ne_bytes()
}
