//! RFC 6052 IPv4-embedded IPv6 addresses: embedding and extraction for every prefix length the
//! RFC allows (32, 40, 48, 56, 64, 96), with the u-octet (bits 64–71) kept zero, and the
//! "non-global IPv4 behind the Well-Known Prefix" rule of §3.1.
//!
//! Everything here is branch-on-constant code over fixed-size arrays so the same functions run in
//! the eBPF datapath (no panicking index, no unbounded loop) and in userspace.

/// The Well-Known Prefix `64:ff9b::/96` (RFC 6052 §2.1).
pub const WKP: [u8; 16] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Its length.
pub const WKP_LEN: u8 = 96;

/// Prefix lengths RFC 6052 §2.2 defines.
pub const VALID_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// Whether `len` is one of the RFC 6052 prefix lengths.
#[inline(always)]
pub const fn valid_len(len: u8) -> bool {
    matches!(len, 32 | 40 | 48 | 56 | 64 | 96)
}

/// Byte positions of the four IPv4 octets inside the IPv6 address for a prefix length (RFC 6052
/// §2.2 figure 1: byte 8, the u-octet, is always skipped). `None` for an invalid length.
#[inline(always)]
pub const fn v4_positions(len: u8) -> Option<[usize; 4]> {
    match len {
        32 => Some([4, 5, 6, 7]),
        40 => Some([5, 6, 7, 9]),
        48 => Some([6, 7, 9, 10]),
        56 => Some([7, 9, 10, 11]),
        64 => Some([9, 10, 11, 12]),
        96 => Some([12, 13, 14, 15]),
        _ => None,
    }
}

/// Whether the first `len` bits of `a` equal those of `prefix`. All RFC 6052 lengths are whole
/// bytes, so this compares 4, 5, 6, 7, 8 or 12 bytes, in constant-index steps the verifier
/// follows (as 4-byte words: a slice comparison would be a `memcmp` call in eBPF).
#[inline(always)]
pub fn matches(prefix: &[u8; 16], len: u8, a: &[u8; 16]) -> bool {
    let p = prefix;
    let word = |x: &[u8; 16], i: usize| u32::from_ne_bytes([x[i], x[i + 1], x[i + 2], x[i + 3]]);
    if word(a, 0) != word(p, 0) {
        return false;
    }
    match len {
        32 => true,
        40 => a[4] == p[4],
        48 => a[4] == p[4] && a[5] == p[5],
        56 => a[4] == p[4] && a[5] == p[5] && a[6] == p[6],
        64 => word(a, 4) == word(p, 4),
        96 => word(a, 4) == word(p, 4) && word(a, 8) == word(p, 8),
        _ => false,
    }
}

/// Writes the IPv6 representation of `v4` under `prefix`/`len` into `out` (RFC 6052 §2.2):
/// prefix, the IPv4 octets around the u-octet, zero suffix. `prefix` must have zero bits beyond
/// `len` (as [`Prefix::new`] and the agent guarantee). In place, so the datapath never holds a
/// 16-byte address in registers.
#[inline(always)]
pub fn embed_into(prefix: &[u8; 16], len: u8, v4: &[u8; 4], out: &mut [u8; 16]) {
    out.copy_from_slice(prefix);
    match len {
        32 => {
            out[4] = v4[0];
            out[5] = v4[1];
            out[6] = v4[2];
            out[7] = v4[3];
        }
        40 => {
            out[5] = v4[0];
            out[6] = v4[1];
            out[7] = v4[2];
            out[9] = v4[3];
        }
        48 => {
            out[6] = v4[0];
            out[7] = v4[1];
            out[9] = v4[2];
            out[10] = v4[3];
        }
        56 => {
            out[7] = v4[0];
            out[9] = v4[1];
            out[10] = v4[2];
            out[11] = v4[3];
        }
        64 => {
            out[9] = v4[0];
            out[10] = v4[1];
            out[11] = v4[2];
            out[12] = v4[3];
        }
        _ => {
            out[12] = v4[0];
            out[13] = v4[1];
            out[14] = v4[2];
            out[15] = v4[3];
        }
    }
}

/// The IPv4 address embedded in `a` under `prefix`/`len`, if `a` is in the prefix and
/// canonical: the u-octet (RFC 6052 §2.2: "MUST be set to zero") and the suffix are zero.
/// Non-canonical forms are refused rather than translated, because replies are always sourced
/// from the canonical form and a peer expecting another spelling would not recognise them.
#[inline(always)]
pub fn extract(prefix: &[u8; 16], len: u8, a: &[u8; 16]) -> Option<[u8; 4]> {
    if !matches(prefix, len, a) {
        return None;
    }
    let zero = |r: &[u8]| r.iter().all(|b| *b == 0);
    let (v4, rest_zero) = match len {
        32 => ([a[4], a[5], a[6], a[7]], zero(&a[8..16])),
        40 => ([a[5], a[6], a[7], a[9]], a[8] == 0 && zero(&a[10..16])),
        48 => ([a[6], a[7], a[9], a[10]], a[8] == 0 && zero(&a[11..16])),
        56 => ([a[7], a[9], a[10], a[11]], a[8] == 0 && zero(&a[12..16])),
        64 => ([a[9], a[10], a[11], a[12]], a[8] == 0 && zero(&a[13..16])),
        96 => ([a[12], a[13], a[14], a[15]], true),
        _ => return None,
    };
    if rest_zero { Some(v4) } else { None }
}

/// An RFC 6052 prefix (Pref64::/n). `addr` holds the prefix bits; bits beyond `len` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: [u8; 16],
    pub len: u8,
}

impl Prefix {
    /// The prefix, with the bits beyond `len` cleared, if `len` is an RFC 6052 length.
    pub const fn new(addr: [u8; 16], len: u8) -> Option<Self> {
        if !valid_len(len) {
            return None;
        }
        let mut a = addr;
        let mut i = (len / 8) as usize;
        while i < 16 {
            a[i] = 0;
            i += 1;
        }
        Some(Self { addr: a, len })
    }

    /// Whether this is the Well-Known Prefix, which must not carry non-global IPv4 addresses.
    pub fn is_wkp(&self) -> bool {
        self.len == WKP_LEN && self.addr == WKP
    }

    /// Whether `a` is in the prefix ([`matches`]). Always inlined: the datapath asks for every
    /// packet a pod sends to the prefix, and an eBPF function call costs more than the compare.
    #[inline(always)]
    pub fn matches(&self, a: &[u8; 16]) -> bool {
        matches(&self.addr, self.len, a)
    }

    /// The IPv6 representation of `v4` ([`embed_into`]).
    pub fn embed(&self, v4: [u8; 4]) -> [u8; 16] {
        let mut out = [0u8; 16];
        embed_into(&self.addr, self.len, &v4, &mut out);
        out
    }

    /// The embedded IPv4 address of a canonical `a` in the prefix ([`extract`]).
    pub fn extract(&self, a: &[u8; 16]) -> Option<[u8; 4]> {
        extract(&self.addr, self.len, a)
    }
}

/// Whether `a` is a globally reachable unicast IPv4 address: not in any block RFC 5735 (now the
/// RFC 6890 registry) lists as special-purpose and not globally reachable, nor in RFC 6598 shared
/// address space. RFC 6052 §3.1 forbids representing those with the Well-Known Prefix.
#[inline(always)]
pub const fn is_global_v4(a: [u8; 4]) -> bool {
    match a {
        [0, ..] => false,                        // "this network" (RFC 1122)
        [10, ..] => false,                       // private (RFC 1918)
        [100, b, ..] if b & 0xc0 == 64 => false, // shared address space (RFC 6598)
        [127, ..] => false,                      // loopback
        [169, 254, ..] => false,                 // link local
        [172, b, ..] if b & 0xf0 == 16 => false, // private (RFC 1918)
        [192, 0, 0, _] => false,                 // IETF protocol assignments
        [192, 0, 2, _] => false,                 // TEST-NET-1
        [192, 88, 99, _] => false,               // 6to4 relay anycast (deprecated)
        [192, 168, ..] => false,                 // private (RFC 1918)
        [198, b, ..] if b & 0xfe == 18 => false, // benchmarking (RFC 2544)
        [198, 51, 100, _] => false,              // TEST-NET-2
        [203, 0, 113, _] => false,               // TEST-NET-3
        [a0, ..] if a0 >= 224 => false,          // multicast, reserved, broadcast
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix::new(a.parse::<Ipv6Addr>().unwrap().octets(), l.parse().unwrap()).unwrap()
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    /// RFC 6052 §2.4 table: 192.0.2.33 under each example prefix.
    #[test]
    fn rfc6052_section_2_4_examples() {
        let v4 = Ipv4Addr::new(192, 0, 2, 33).octets();
        let table = [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
        ];
        for (prefix, want) in table {
            let pre = p(prefix);
            let got = pre.embed(v4);
            assert_eq!(
                Ipv6Addr::from(got),
                want.parse::<Ipv6Addr>().unwrap(),
                "{prefix}"
            );
            assert_eq!(pre.extract(&got), Some(v4), "{prefix}");
            assert!(pre.matches(&got));
        }
    }

    #[test]
    fn embedding_round_trips_and_never_touches_the_u_octet() {
        for len in VALID_LENGTHS {
            // A prefix with every bit set, so a stray write into the prefix would show.
            let pre = Prefix::new([0xff; 16], len).unwrap();
            for v4 in [
                [0, 0, 0, 0],
                [255, 255, 255, 255],
                [1, 2, 3, 4],
                [198, 18, 0, 1],
            ] {
                let a = pre.embed(v4);
                if len < 96 {
                    assert_eq!(a[8], 0, "u-octet for /{len}");
                }
                assert_eq!(pre.extract(&a), Some(v4), "/{len}");
                assert_eq!(
                    &a[..usize::from(len / 8)],
                    &pre.addr[..usize::from(len / 8)]
                );
                let pos = v4_positions(len).unwrap();
                for (i, at) in pos.iter().enumerate() {
                    assert_eq!(a[*at], v4[i]);
                }
            }
        }
    }

    #[test]
    fn non_canonical_addresses_are_refused() {
        for len in [32u8, 40, 48, 56, 64] {
            let pre = Prefix::new(v6("2001:db8:122:344::"), len).unwrap();
            let mut a = pre.embed([192, 0, 2, 33]);
            a[8] = 1; // u-octet set
            assert_eq!(pre.extract(&a), None, "/{len} u-octet");
            let mut a = pre.embed([192, 0, 2, 33]);
            a[15] = 1; // suffix set
            assert_eq!(pre.extract(&a), None, "/{len} suffix");
        }
        // Outside the prefix.
        let pre = p("fd00:6464::/96");
        assert_eq!(pre.extract(&v6("fd00:6465::1")), None);
        assert!(!pre.matches(&v6("fd00:6465::1")));
    }

    #[test]
    fn prefix_bits_beyond_the_length_are_cleared() {
        let pre = Prefix::new(v6("2001:db8:ffff:ffff:ffff::1"), 48).unwrap();
        assert_eq!(
            Ipv6Addr::from(pre.addr),
            "2001:db8:ffff::".parse::<Ipv6Addr>().unwrap()
        );
        assert!(Prefix::new(WKP, 95).is_none());
        assert!(Prefix::new(WKP, 128).is_none());
        assert!(p("64:ff9b::/96").is_wkp());
        assert!(!p("64:ff9b:1::/96").is_wkp());
        assert!(!p("64:ff9b::/64").is_wkp());
    }

    #[test]
    fn global_ipv4_classification() {
        let non_global = [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ];
        let global = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.101.1",
            "203.0.114.1",
            "223.255.255.255",
            "11.0.0.1",
        ];
        for a in non_global {
            assert!(
                !is_global_v4(a.parse::<Ipv4Addr>().unwrap().octets()),
                "{a}"
            );
        }
        for a in global {
            assert!(is_global_v4(a.parse::<Ipv4Addr>().unwrap().octets()), "{a}");
        }
    }
}
