//! murmur3's mixing: the keyed hash that places bindings in the pool ([`super::pool`]) and the
//! finaliser behind the IPv4 Identification generator ([`super::header::ipv4_id`]).

#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// murmur3's finaliser: a bijection of `u32` with full avalanche.
#[inline(always)]
pub const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Keyed hash of an IPv6 address (and optionally a port and protocol); murmur3's mixing.
#[inline(always)]
pub fn hash(key: &[u32; 4], addr: &[u8; 16], port: u16, proto: u8) -> u32 {
    let mut h = key[0];
    h = mix(
        h,
        u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]) ^ key[1],
    );
    h = mix(
        h,
        u32::from_be_bytes([addr[4], addr[5], addr[6], addr[7]]) ^ key[2],
    );
    h = mix(
        h,
        u32::from_be_bytes([addr[8], addr[9], addr[10], addr[11]]) ^ key[3],
    );
    h = mix(
        h,
        u32::from_be_bytes([addr[12], addr[13], addr[14], addr[15]]),
    );
    h = mix(h, (u32::from(port) << 8) | u32::from(proto));
    fmix(h)
}
