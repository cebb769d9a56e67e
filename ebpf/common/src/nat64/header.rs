//! IPv4 and IPv6 headers as RFC 7915 translates them (§4.1 IPv4 → IPv6, §5.1 IPv6 → IPv4 and
//! §5.1.1 with a Fragment Header). Headers are parsed from and written to fixed-size arrays.

use super::{csum, hash::fmix};
// Header lengths and protocol numbers under the names this module has always given them.
pub use crate::net::{
    FRAG_HLEN, HDR_DIFF, IPV4_HLEN, IPV6_HLEN,
    proto::{
        FRAGMENT as PROTO_FRAGMENT, ICMP as PROTO_ICMP, ICMPV6 as PROTO_ICMPV6, TCP as PROTO_TCP,
        UDP as PROTO_UDP,
    },
};

/// Largest translated IPv4 packet sent with DF clear (RFC 7915 §5.1): 1280 − 20, so that IPv4
/// fragments of an IPv6 minimum-MTU packet still fit an IPv6 link back.
pub const DF_THRESHOLD: u16 = 1260;

/// The fields of an IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip6 {
    pub traffic_class: u8,
    pub flow_label: u32,
    pub payload_len: u16,
    pub next: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl Ip6 {
    /// Parses a header into `self` (in place; the caller checked the version nibble).
    #[inline(always)]
    pub fn parse_into(&mut self, h: &[u8; IPV6_HLEN]) {
        self.traffic_class = (h[0] << 4) | (h[1] >> 4);
        self.flow_label = (u32::from(h[1] & 0x0f) << 16) | (u32::from(h[2]) << 8) | u32::from(h[3]);
        self.payload_len = u16::from_be_bytes([h[4], h[5]]);
        self.next = h[6];
        self.hop_limit = h[7];
        self.src.copy_from_slice(&h[8..24]);
        self.dst.copy_from_slice(&h[24..40]);
    }

    /// Parses a header (the caller checked the version nibble).
    #[inline(always)]
    pub fn parse(h: &[u8; IPV6_HLEN]) -> Self {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        Self {
            traffic_class: (h[0] << 4) | (h[1] >> 4),
            flow_label: (u32::from(h[1] & 0x0f) << 16) | (u32::from(h[2]) << 8) | u32::from(h[3]),
            payload_len: u16::from_be_bytes([h[4], h[5]]),
            next: h[6],
            hop_limit: h[7],
            src,
            dst,
        }
    }

    #[inline(always)]
    pub fn write(&self) -> [u8; IPV6_HLEN] {
        let mut h = [0u8; IPV6_HLEN];
        self.write_into(&mut h);
        h
    }

    /// Writes the header into `h` (in place: the datapath keeps headers off its small stack).
    #[inline(always)]
    pub fn write_into(&self, h: &mut [u8; IPV6_HLEN]) {
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = (self.traffic_class << 4) | ((self.flow_label >> 16) as u8 & 0x0f);
        h[2] = (self.flow_label >> 8) as u8;
        h[3] = self.flow_label as u8;
        h[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        h[6] = self.next;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src);
        h[24..40].copy_from_slice(&self.dst);
    }
}

/// Writes an IPv6 header from its fields, the addresses taken by reference (so a datapath
/// caller copies them memory to memory).
#[inline(always)]
pub fn write6(
    h: &mut [u8; IPV6_HLEN],
    traffic_class: u8,
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) {
    h[0] = 0x60 | (traffic_class >> 4);
    h[1] = traffic_class << 4;
    h[2] = 0;
    h[3] = 0;
    h[4..6].copy_from_slice(&payload_len.to_be_bytes());
    h[6] = next;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(src);
    h[24..40].copy_from_slice(dst);
}

/// The fields of an IPv4 header (options are never written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip4 {
    /// Header length in bytes (20–60) as parsed; written headers are always 20 bytes.
    pub ihl: u8,
    pub tos: u8,
    pub total_len: u16,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ip4 {
    /// Parses a header into `self` (in place).
    #[inline(always)]
    pub fn parse_into(&mut self, h: &[u8; IPV4_HLEN]) {
        *self = Self::parse(h);
    }

    #[inline(always)]
    pub fn parse(h: &[u8; IPV4_HLEN]) -> Self {
        let flags = u16::from_be_bytes([h[6], h[7]]);
        Self {
            ihl: (h[0] & 0x0f) * 4,
            tos: h[1],
            total_len: u16::from_be_bytes([h[2], h[3]]),
            id: u16::from_be_bytes([h[4], h[5]]),
            df: flags & 0x4000 != 0,
            mf: flags & 0x2000 != 0,
            frag_off: flags & 0x1fff,
            ttl: h[8],
            proto: h[9],
            src: [h[12], h[13], h[14], h[15]],
            dst: [h[16], h[17], h[18], h[19]],
        }
    }

    /// Whether this is a fragment (first or later).
    #[inline(always)]
    pub const fn is_fragment(&self) -> bool {
        self.mf || self.frag_off != 0
    }

    /// A 20-byte header with a valid header checksum.
    #[inline(always)]
    pub fn write(&self) -> [u8; IPV4_HLEN] {
        let mut h = [0u8; IPV4_HLEN];
        self.write_into(&mut h);
        h
    }

    /// Writes the 20-byte header, checksum included, into `h`.
    #[inline(always)]
    pub fn write_into(&self, h: &mut [u8; IPV4_HLEN]) {
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        let flags =
            (u16::from(self.df) << 14) | (u16::from(self.mf) << 13) | (self.frag_off & 0x1fff);
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src);
        h[16..20].copy_from_slice(&self.dst);
        h[10] = 0;
        h[11] = 0;
        let c = csum::finish(csum::sum(h, 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// Protocol number after translation to IPv4: ICMPv6 becomes ICMP, the rest is unchanged.
#[inline(always)]
pub const fn proto_to_v4(next: u8) -> u8 {
    if next == PROTO_ICMPV6 {
        PROTO_ICMP
    } else {
        next
    }
}

/// Next header after translation to IPv6: ICMP becomes ICMPv6.
#[inline(always)]
pub const fn proto_to_v6(proto: u8) -> u8 {
    if proto == PROTO_ICMP {
        PROTO_ICMPV6
    } else {
        proto
    }
}

/// RFC 7915 §5.1: the IPv4 header for an IPv6 packet without a Fragment Header whose upper
/// layer is `l4_len` bytes. Traffic class is copied to TOS, the hop limit to TTL (the caller has
/// already decremented it, as a router must), DF is set above 1260 bytes and the Identification
/// comes from the caller's generator.
#[inline(always)]
pub fn v4_for_v6(h: &Ip6, l4_len: u16, src: [u8; 4], dst: [u8; 4], id: u16) -> Ip4 {
    let total_len = (IPV4_HLEN as u16).wrapping_add(l4_len);
    Ip4 {
        ihl: IPV4_HLEN as u8,
        tos: h.traffic_class,
        total_len,
        id,
        df: total_len > DF_THRESHOLD,
        mf: false,
        frag_off: 0,
        ttl: h.hop_limit,
        proto: proto_to_v4(h.next),
        src,
        dst,
    }
}

/// The IPv4 Identification of the `seq`-th packet a translator CPU sends, for generator key
/// `key` (RFC 7915 §5.1 leaves the generator to the translator): a keyed hash of a sequence
/// number, so IDs look random to whoever sees them (RFC 7739) and repeat no more often than
/// random ones would, without a random-number call per packet.
#[inline(always)]
pub fn ipv4_id(key: u32, seq: u32) -> u16 {
    (fmix(seq ^ key).wrapping_add(key) >> 16) as u16
}

/// An IPv6 Fragment Header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag6 {
    pub next: u8,
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub id: u32,
}

impl Frag6 {
    #[inline(always)]
    pub fn parse(h: &[u8; FRAG_HLEN]) -> Self {
        let off = u16::from_be_bytes([h[2], h[3]]);
        Self {
            next: h[0],
            offset: off >> 3,
            more: off & 1 != 0,
            id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        }
    }

    #[inline(always)]
    pub fn write(&self) -> [u8; FRAG_HLEN] {
        let off = (self.offset << 3) | u16::from(self.more);
        let o = off.to_be_bytes();
        let id = self.id.to_be_bytes();
        [self.next, 0, o[0], o[1], id[0], id[1], id[2], id[3]]
    }
}

/// RFC 7915 §5.1.1: the IPv4 header for an IPv6 fragment. Identification is the low 16 bits of
/// the fragment identification, MF and the offset are copied, DF is clear. `l4_len` is the
/// fragment's payload after the Fragment Header.
#[inline(always)]
pub fn v4_for_v6_fragment(h: &Ip6, f: &Frag6, l4_len: u16, src: [u8; 4], dst: [u8; 4]) -> Ip4 {
    Ip4 {
        ihl: IPV4_HLEN as u8,
        tos: h.traffic_class,
        total_len: (IPV4_HLEN as u16).wrapping_add(l4_len),
        id: f.id as u16,
        df: false,
        mf: f.more,
        frag_off: f.offset,
        ttl: h.hop_limit,
        proto: proto_to_v4(f.next),
        src,
        dst,
    }
}

/// RFC 7915 §4.1: the IPv6 header for an IPv4 packet carrying `payload_len` bytes after its
/// header. TOS is copied to the traffic class, the flow label is zero, TTL (already decremented)
/// becomes the hop limit. A fragment also needs a Fragment Header ([`frag_for_v4`]) and
/// `next` = 44.
#[inline(always)]
pub fn v6_for_v4(h: &Ip4, payload_len: u16, src: [u8; 16], dst: [u8; 16]) -> Ip6 {
    Ip6 {
        traffic_class: h.tos,
        flow_label: 0,
        payload_len,
        next: proto_to_v6(h.proto),
        hop_limit: h.ttl,
        src,
        dst,
    }
}

/// RFC 7915 §4.1: the Fragment Header for an IPv4 fragment: identification zero-extended,
/// offset and MF copied.
#[inline(always)]
pub const fn frag_for_v4(h: &Ip4) -> Frag6 {
    Frag6 {
        next: proto_to_v6(h.proto),
        offset: h.frag_off,
        more: h.mf,
        id: h.id as u32,
    }
}

/// Whether a received IPv4 header's checksum verifies (RFC 1812 §5.2.2): the fixed part `h`
/// plus `opts`, the `csum::sum` of its options (0 without).
#[inline(always)]
pub fn v4_checksum_ok(h: &[u8; IPV4_HLEN], opts: u32) -> bool {
    csum::fold(csum::sum(h, opts)) == 0xffff
}

/// Whether a TCP data offset of `hlen` bytes agrees with a segment of `l4_len` bytes: at least
/// the fixed header (data offset ≥ 5, RFC 9293 §3.1) and not past the segment.
#[inline(always)]
pub const fn tcp_hlen_ok(hlen: u16, l4_len: u16) -> bool {
    hlen >= 20 && hlen <= l4_len
}

/// Whether a UDP length field agrees with a payload of `l4_len` bytes: at least the header
/// (RFC 768) and not past the payload.
#[inline(always)]
pub const fn udp_len_ok(len: u16, l4_len: u16) -> bool {
    len >= 8 && len <= l4_len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6hdr() -> Ip6 {
        Ip6 {
            traffic_class: 0xb8,
            flow_label: 0xabcde,
            payload_len: 100,
            next: PROTO_UDP,
            hop_limit: 63,
            src: [0xfd, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa],
            dst: [0xfd, 0, 0x64, 0x64, 0, 0, 0, 0, 0, 0, 0, 0, 198, 18, 0, 10],
        }
    }

    #[test]
    fn ipv6_header_round_trips() {
        let h = v6hdr();
        let b = h.write();
        assert_eq!(b[0] >> 4, 6);
        assert_eq!(Ip6::parse(&b), h);
    }

    #[test]
    fn ipv4_header_round_trips_with_valid_checksum() {
        let h = v4_for_v6(&v6hdr(), 100, [198, 18, 0, 1], [198, 18, 0, 10], 0x1234);
        let b = h.write();
        assert_eq!(csum::fold(csum::sum(&b, 0)), 0xffff);
        assert_eq!(Ip4::parse(&b), h);
        assert_eq!(h.tos, 0xb8);
        assert_eq!(h.ttl, 63);
        assert_eq!(h.total_len, 120);
        assert!(!h.df && !h.mf && h.frag_off == 0);
    }

    #[test]
    fn df_is_set_above_1260_bytes() {
        let h = v6hdr();
        assert!(!v4_for_v6(&h, 1240, [0; 4], [0; 4], 0).df, "1260 total");
        assert!(v4_for_v6(&h, 1241, [0; 4], [0; 4], 0).df, "1261 total");
    }

    #[test]
    fn icmp_protocol_numbers_are_swapped() {
        let mut h = v6hdr();
        h.next = PROTO_ICMPV6;
        let v4 = v4_for_v6(&h, 8, [0; 4], [0; 4], 0);
        assert_eq!(v4.proto, PROTO_ICMP);
        let back = v6_for_v4(&v4, 8, [0; 16], [0; 16]);
        assert_eq!(back.next, PROTO_ICMPV6);
        assert_eq!(back.traffic_class, 0xb8);
        assert_eq!(back.flow_label, 0);
        assert_eq!(proto_to_v4(PROTO_TCP), PROTO_TCP);
        assert_eq!(proto_to_v6(PROTO_UDP), PROTO_UDP);
    }

    #[test]
    fn fragments_carry_id_offset_and_more_both_ways() {
        let f = Frag6 {
            next: PROTO_UDP,
            offset: 185,
            more: true,
            id: 0xdead_beef,
        };
        assert_eq!(Frag6::parse(&f.write()), f);
        let v4 = v4_for_v6_fragment(&v6hdr(), &f, 1480, [1; 4], [2; 4]);
        assert_eq!(
            (v4.id, v4.frag_off, v4.mf, v4.df),
            (0xbeef, 185, true, false)
        );
        assert!(v4.is_fragment());
        let b = v4.write();
        assert_eq!(Ip4::parse(&b), v4);
        let back = frag_for_v4(&v4);
        assert_eq!(
            (back.id, back.offset, back.more, back.next),
            (0xbeef, 185, true, PROTO_UDP)
        );
    }

    #[test]
    fn ipv4_ids_spread_like_random_ones_and_depend_on_the_key() {
        use std::{collections::HashSet, vec::Vec};
        // 4096 consecutive packets: random 16-bit IDs would give ~3970 distinct values (the
        // birthday bound); a counter would give 4096, a poor generator far fewer.
        let ids: Vec<u16> = (0..4096u32)
            .map(|i| ipv4_id(0x9e37_79b9, 1000 + i))
            .collect();
        let distinct = ids.iter().collect::<HashSet<_>>().len();
        assert!((3900..=4096).contains(&distinct), "{distinct} distinct IDs");
        // Not a counter: consecutive IDs are not consecutive numbers.
        let steps = ids
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(steps < 8, "{steps} consecutive steps");
        // High and low bytes both vary (the truncation keeps mixed bits).
        assert!(ids.iter().map(|i| i & 0xff).collect::<HashSet<_>>().len() > 250);
        assert!(ids.iter().map(|i| i >> 8).collect::<HashSet<_>>().len() > 250);
        // Another CPU's key gives another sequence.
        let other: Vec<u16> = (0..64u32).map(|i| ipv4_id(0x1234_5679, 1000 + i)).collect();
        assert_ne!(&ids[..64], &other[..]);
    }

    #[test]
    fn self_consistency_checks() {
        let mut h = Ip4 {
            ihl: 20,
            tos: 0,
            total_len: 40,
            id: 7,
            df: true,
            mf: false,
            frag_off: 0,
            ttl: 64,
            proto: PROTO_TCP,
            src: [192, 0, 2, 1],
            dst: [198, 51, 100, 2],
        }
        .write();
        assert!(v4_checksum_ok(&h, 0));
        // Options count: the fixed part alone does not verify with a non-zero option word.
        assert!(!v4_checksum_ok(&h, 0x0100));
        h[8] -= 1;
        assert!(!v4_checksum_ok(&h, 0));
        // ... and a header whose checksum covers that word does.
        assert!(v4_checksum_ok(&h, 0x0100));
        assert!(tcp_hlen_ok(20, 20) && tcp_hlen_ok(60, 100));
        assert!(!tcp_hlen_ok(16, 100) && !tcp_hlen_ok(24, 20));
        assert!(udp_len_ok(8, 8) && udp_len_ok(9, 100));
        assert!(!udp_len_ok(7, 100) && !udp_len_ok(101, 100));
    }
}
