//! One's complement arithmetic (RFC 1071, RFC 1624) over fixed-size arrays, for header checksums
//! and for the checksum deltas the datapath feeds to the kernel's csum helpers.
//!
//! Sums are kept as `u32` accumulators of big-endian 16-bit words and folded at the end.

/// Adds big-endian 16-bit words of `data` to `acc`. `N` must be even for the words to line up
/// (an odd trailing byte is padded with zero, as RFC 1071 specifies).
#[inline(always)]
pub fn sum<const N: usize>(data: &[u8; N], mut acc: u32) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([data[i], data[i + 1]])));
        i += 2;
    }
    if N % 2 == 1 {
        acc = acc.wrapping_add(u32::from(data[N - 1]) << 8);
    }
    acc
}

/// Adds one 16-bit value.
#[inline(always)]
pub const fn add16(acc: u32, v: u16) -> u32 {
    acc.wrapping_add(v as u32)
}

/// Folds an accumulator to 16 bits (end-around carry).
#[inline(always)]
pub const fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum field for data summing to `acc`: the complement of the folded sum.
#[inline(always)]
pub const fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// One's complement subtraction of a 16-bit word (adds its complement).
#[inline(always)]
pub const fn sub16(acc: u32, v: u16) -> u32 {
    acc.wrapping_add(!v as u32)
}

/// RFC 1624 eqn. 3: the checksum after data summing to `old_sum` became data summing to
/// `new_sum`: `HC' = ~(~HC + ~m + m')`, with both sums folded.
#[inline(always)]
pub const fn update(check: u16, old_sum: u16, new_sum: u16) -> u16 {
    let acc = (!check as u32) + (!old_sum as u32) + (new_sum as u32);
    !fold(acc)
}

/// IPv6 pseudo-header sum (RFC 8200 §8.1): addresses, upper-layer length, next header.
#[inline(always)]
pub fn pseudo6(src: &[u8; 16], dst: &[u8; 16], len: u32, next: u8) -> u32 {
    let mut acc = sum(src, 0);
    acc = sum(dst, acc);
    acc = add16(acc, (len >> 16) as u16);
    acc = add16(acc, len as u16);
    add16(acc, u16::from(next))
}

/// IPv4 pseudo-header sum (RFC 793/768): addresses, zero, protocol, upper-layer length.
#[inline(always)]
pub fn pseudo4(src: &[u8; 4], dst: &[u8; 4], len: u16, proto: u8) -> u32 {
    let mut acc = sum(src, 0);
    acc = sum(dst, acc);
    acc = add16(acc, len);
    add16(acc, u16::from(proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 → sum 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(finish(sum(&d, 0)), !0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_update_verifies_like_recomputation() {
        let mut hdr = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        for (old, new) in [
            (0x4001u16, 0x3f01u16),
            (0, 0xffff),
            (0xffff, 0),
            (0x1234, 0x1234),
        ] {
            hdr[8..10].copy_from_slice(&old.to_be_bytes());
            hdr[10] = 0;
            hdr[11] = 0;
            let c_old = finish(sum(&hdr, 0));
            hdr[8..10].copy_from_slice(&new.to_be_bytes());
            let c_new = update(c_old, old, new);
            hdr[10..12].copy_from_slice(&c_new.to_be_bytes());
            assert_eq!(fold(sum(&hdr, 0)), 0xffff, "{old:#x} -> {new:#x}");
        }
    }

    #[test]
    fn subtraction_cancels_addition() {
        let acc = add16(0x1234, 0xbeef);
        assert_eq!(fold(sub16(acc, 0xbeef)), fold(0x1234));
    }
}
