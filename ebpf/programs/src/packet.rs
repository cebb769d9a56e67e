//! Packet access for every stage: reads straight from the linear packet data where the verifier
//! can bound them (no helper call), loads and stores through `bpf_skb_{load,store}_bytes`
//! otherwise, the skb fields the stages read, and resizing. Failures are counted reasons
//! (`verdict::fail`).

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_check_mtu, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes},
    programs::TcContext,
};

use crate::verdict::{Res, fail};

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

/// A `T` at `off`, through `bpf_skb_load_bytes`.
#[inline(always)]
pub fn load<T>(ctx: &TcContext, off: usize) -> Res<T> {
    ctx.load(off).map_err(|_| fail::MALFORMED)
}

/// [`load`] for the per-packet path: [`read`], straight from the linear packet data when it is
/// there (no helper call). Only where the offset's bounds are plain to the verifier (it loses
/// them for offsets derived after a check).
#[inline(always)]
pub fn load_fast<T: Copy>(ctx: &TcContext, off: usize) -> Res<T> {
    read(ctx, off).ok_or(fail::MALFORMED)
}

/// [`load_into`] for the per-packet path (see [`load_fast`]).
#[inline(always)]
pub fn load_into_fast<const N: usize>(ctx: &TcContext, off: usize, buf: &mut [u8; N]) -> Res<()> {
    if let Some(p) = ptr_at::<[u8; N]>(ctx, off) {
        // SAFETY: `ptr_at` checked the N bytes are in the linear data; a byte array has no
        // alignment to respect.
        crate::mem::copy(buf, unsafe { &*p });
        return Ok(());
    }
    load_into(ctx, off, buf)
}

/// Loads `N` bytes at `off` into `buf` (a scratch buffer: a load into a stack value is
/// [`load`]).
#[inline(always)]
pub fn load_into<const N: usize>(ctx: &TcContext, off: usize, buf: &mut [u8; N]) -> Res<()> {
    // SAFETY: `buf` holds N bytes.
    unsafe { load_raw(ctx, off, buf.as_mut_ptr(), N as u32) }
}

/// Loads `len` bytes at `off` to `dst`: for a run of fields that is no one array (the two
/// addresses at the start of a key, say), in one helper call.
///
/// # Safety
/// `dst` must be valid for `len` bytes of writes.
#[inline(always)]
pub unsafe fn load_raw(ctx: &TcContext, off: usize, dst: *mut u8, len: u32) -> Res<()> {
    // SAFETY: the caller guarantees `len` writable bytes at `dst`; the helper bounds-checks the
    // packet side.
    let r = unsafe { bpf_skb_load_bytes(skb(ctx).cast(), off as u32, dst.cast(), len) };
    if r == 0 { Ok(()) } else { Err(fail::MALFORMED) }
}

#[inline(always)]
pub fn store<T>(ctx: &TcContext, off: usize, v: &T) -> Res<()> {
    store_first(ctx, off, v, core::mem::size_of::<T>())
}

/// Stores the first `len` bytes of `v` (at most all of it) at `off`.
#[inline(always)]
pub fn store_first<T>(ctx: &TcContext, off: usize, v: &T, len: usize) -> Res<()> {
    store_with(ctx, off, v, len, 0)
}

/// [`store`] with `bpf_skb_store_bytes` flags (`BPF_F_RECOMPUTE_CSUM`, ...).
#[inline(always)]
pub fn store_flags<T>(ctx: &TcContext, off: usize, v: &T, flags: u64) -> Res<()> {
    store_with(ctx, off, v, core::mem::size_of::<T>(), flags)
}

#[inline(always)]
fn store_with<T>(ctx: &TcContext, off: usize, v: &T, len: usize, flags: u64) -> Res<()> {
    let len = len.min(core::mem::size_of::<T>());
    // SAFETY: `v` is valid for reads of `len` ≤ size_of::<T>() bytes; the helper copies them.
    let r = unsafe {
        bpf_skb_store_bytes(
            skb(ctx).cast(),
            off as u32,
            (v as *const T).cast(),
            len as u32,
            flags,
        )
    };
    if r == 0 { Ok(()) } else { Err(fail::HELPER) }
}

#[inline(always)]
pub fn skb(ctx: &TcContext) -> *mut __sk_buff {
    ctx.skb.skb
}

/// Index of the device the program runs on (the packet's arrival device at ingress).
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

/// Makes the packet `len` bytes long: trims it, or grows it with zeros (`bpf_skb_change_tail`;
/// also clears its GSO state).
#[inline(always)]
pub fn set_len(ctx: &TcContext, len: u32) -> Res<()> {
    // SAFETY: plain helper call on our context.
    let r = unsafe { bpf_skb_change_tail(skb(ctx), len, 0) };
    if r == 0 { Ok(()) } else { Err(fail::HELPER) }
}

/// Switches the packet to EtherType `proto` (host order), resizing the IP header's room
/// (`bpf_skb_change_proto`).
#[inline(always)]
pub fn change_proto(ctx: &TcContext, proto: u16) -> Res<()> {
    ctx.change_proto(proto.to_be(), 0).map_err(|_| fail::HELPER)
}

/// Grows (or, negative, shrinks) the packet by `delta` bytes at `mode`'s position
/// (`bpf_skb_adjust_room`).
#[inline(always)]
pub fn adjust_room(ctx: &TcContext, delta: i32, mode: u32) -> Res<()> {
    ctx.adjust_room(delta, mode, 0).map_err(|_| fail::HELPER)
}
