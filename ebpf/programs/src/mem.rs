//! Zeroing without `memset`, copying without `memmove`. The BPF backend turns struct-sized
//! zeroing (`zeroed()`, `[0; N]` into a field) into calls to compiler_builtins' `memset`, a
//! byte-at-a-time loop: 64 iterations for a FIB lookup's parameters on every packet. These
//! helpers store whole words instead; the stores are volatile so LLVM cannot fold them back
//! into a `memset` call. Likewise an assignment between two places LLVM cannot prove apart
//! (packet data, map values, the scratch area) becomes a `memmove` call, another byte loop;
//! [`copy`] says they are apart, and a `memcpy` of known size is expanded inline. Addresses are
//! compared a word at a time ([`eq16`]): there is no `bcmp` to call.

/// Sets every byte of `v` to zero, one 4-byte word at a time.
#[inline(always)]
pub fn zero<T: Copy>(v: &mut T) {
    // SAFETY: a reference is valid and aligned for all of T.
    unsafe { zero_raw(v as *mut T) }
}

/// Zeroes `slot` in place and returns it initialised: `core::mem::zeroed()` is a `memset` call,
/// and zeroing a temporary and moving it out lets LLVM turn the move back into one.
///
/// # Safety
/// All-zero bytes must be a valid `T` (a plain-integer struct).
#[inline(always)]
pub unsafe fn zero_in<T: Copy>(slot: &mut core::mem::MaybeUninit<T>) -> &mut T {
    // SAFETY: `slot` is valid for writes of a `T`; every byte is written, and the caller
    // vouches that zero bytes are a valid `T`.
    unsafe {
        zero_raw(slot.as_mut_ptr());
        slot.assume_init_mut()
    }
}

/// # Safety
/// `p` must be valid for writes of a `T`.
#[inline(always)]
unsafe fn zero_raw<T: Copy>(p: *mut T) {
    const {
        assert!(core::mem::size_of::<T>().is_multiple_of(4) && core::mem::align_of::<T>() >= 4);
    }
    let w = p.cast::<u32>();
    for i in 0..core::mem::size_of::<T>() / 4 {
        // SAFETY: inside `*p` (size asserted a multiple of 4), aligned for u32 (asserted).
        unsafe { w.add(i).write_volatile(0) };
    }
}

/// Sets `out[from..]` to zero, byte by byte, without a `memset` call.
#[inline(always)]
pub fn zero_tail<const N: usize>(out: &mut [u8; N], from: usize) {
    let p = out.as_mut_ptr();
    for i in from..N {
        // SAFETY: i < N: inside `out`.
        unsafe { p.add(i).write_volatile(0) };
    }
}

/// `*dst = *src` as a non-overlapping copy, expanded inline (see the module documentation).
#[inline(always)]
pub fn copy<T: Copy>(dst: &mut T, src: &T) {
    // SAFETY: both are valid, aligned references to a `T`; a `&mut` never aliases another
    // live reference, so the two do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, 1) }
}

/// The scratch area behind `p`, an array map value. The kernel aligns array values to 8 bytes;
/// saying so lets LLVM copy its fields a word at a time rather than a byte at a time (it
/// knows nothing of a pointer a helper returned).
///
/// # Safety
/// `p` points to a live array map value that nothing else references while the result lives.
#[inline(always)]
pub unsafe fn scratch_mut<'a, T>(p: *mut T) -> &'a mut T {
    const { assert!(core::mem::align_of::<T>() <= 8) };
    // SAFETY: the caller's promise, and the kernel's alignment of array values.
    unsafe {
        core::hint::assert_unchecked(p.is_aligned());
        &mut *p
    }
}

/// 16-byte equality without a `bcmp` call (the BPF target has no libc).
#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a0, a1) = split(a);
    let (b0, b1) = split(b);
    a0 == b0 && a1 == b1
}

#[inline(always)]
fn split(a: &[u8; 16]) -> (u64, u64) {
    let p = a.as_ptr().cast::<u64>();
    // SAFETY: `a` is 16 readable bytes; unaligned reads are explicit.
    unsafe { (p.read_unaligned(), p.add(1).read_unaligned()) }
}

#[inline(always)]
pub fn is_zero16(a: &[u8; 16]) -> bool {
    let (a0, a1) = split(a);
    a0 == 0 && a1 == 0
}
