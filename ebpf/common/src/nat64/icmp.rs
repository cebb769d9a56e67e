//! ICMP ↔ ICMPv6 type/code translation (RFC 7915 §4.2 and §5.2), parameter-problem pointer
//! mapping (figures 3 and 6) and the MTU arithmetic of Packet Too Big ↔ Fragmentation Needed.
//!
//! The tables are total functions over (type, code): anything RFC 7915 says to "silently drop"
//! maps to `None`, so the datapath has one decision to make and the unit tests can walk all
//! 65,536 combinations per direction.

use crate::net::{HDR_DIFF as HDR_DIFF_USIZE, IPV6_MIN_MTU, icmp4 as v4, icmp6 as v6};

/// What the 4-byte field after type/code/checksum becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    /// Echo: identifier (translated by the stateful layer) and sequence, copied.
    Echo,
    /// An error whose "unused" field stays zero; the inner packet is translated.
    Error,
    /// Packet Too Big ↔ Fragmentation Needed: the MTU is recomputed.
    Mtu,
    /// Parameter Problem: the pointer is mapped (figures 3 and 6).
    Pointer,
    /// ICMPv4 Protocol Unreachable → ICMPv6 Parameter Problem pointing at Next Header (6).
    FixedPointer(u8),
}

/// A translated (type, code) and how to rewrite the rest of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub ty: u8,
    pub code: u8,
    pub rest: Rest,
}

impl Mapped {
    /// Whether the message is an error (carries an inner packet to translate).
    #[inline(always)]
    pub const fn is_error(&self) -> bool {
        !matches!(self.rest, Rest::Echo)
    }
}

const fn m(ty: u8, code: u8, rest: Rest) -> Option<Mapped> {
    Some(Mapped { ty, code, rest })
}

/// ICMPv6 → ICMPv4 (RFC 7915 §5.2). `None` = silently drop (MLD, ND, unknown informational
/// types, unknown codes, Parameter Problem code 2, ...).
#[inline(always)]
pub const fn icmp6_to_4(ty: u8, code: u8) -> Option<Mapped> {
    match (ty, code) {
        (v6::ECHO_REQUEST, 0) => m(v4::ECHO_REQUEST, 0, Rest::Echo),
        (v6::ECHO_REPLY, 0) => m(v4::ECHO_REPLY, 0, Rest::Echo),
        // Destination Unreachable.
        (v6::DEST_UNREACH, 0) => m(v4::DEST_UNREACH, v4::HOST_UNREACH, Rest::Error),
        (v6::DEST_UNREACH, 1) => m(v4::DEST_UNREACH, v4::HOST_ADMIN_PROHIBITED, Rest::Error),
        (v6::DEST_UNREACH, 2) => m(v4::DEST_UNREACH, v4::HOST_UNREACH, Rest::Error),
        (v6::DEST_UNREACH, 3) => m(v4::DEST_UNREACH, v4::HOST_UNREACH, Rest::Error),
        (v6::DEST_UNREACH, 4) => m(v4::DEST_UNREACH, v4::PORT_UNREACH, Rest::Error),
        // Packet Too Big → Fragmentation Needed.
        (v6::PACKET_TOO_BIG, 0) => m(v4::DEST_UNREACH, v4::FRAG_NEEDED, Rest::Mtu),
        // Time Exceeded: code unchanged.
        (v6::TIME_EXCEEDED, 0) => m(v4::TIME_EXCEEDED, 0, Rest::Error),
        (v6::TIME_EXCEEDED, 1) => m(v4::TIME_EXCEEDED, 1, Rest::Error),
        // Parameter Problem.
        (v6::PARAM_PROBLEM, 0) => m(v4::PARAM_PROBLEM, 0, Rest::Pointer),
        (v6::PARAM_PROBLEM, 1) => m(v4::DEST_UNREACH, v4::PROTO_UNREACH, Rest::Error),
        _ => None,
    }
}

/// ICMPv4 → ICMPv6 (RFC 7915 §4.2). `None` = silently drop (timestamps, information and mask
/// requests, router discovery, redirect, source quench, unknown types and codes, Host
/// Precedence Violation, Parameter Problem "missing option").
#[inline(always)]
pub const fn icmp4_to_6(ty: u8, code: u8) -> Option<Mapped> {
    match (ty, code) {
        (v4::ECHO_REQUEST, 0) => m(v6::ECHO_REQUEST, 0, Rest::Echo),
        (v4::ECHO_REPLY, 0) => m(v6::ECHO_REPLY, 0, Rest::Echo),
        (v4::DEST_UNREACH, c) => match c {
            0 | 1 | 5 | 6 | 7 | 8 | 11 | 12 => m(v6::DEST_UNREACH, v6::NO_ROUTE, Rest::Error),
            2 => m(
                v6::PARAM_PROBLEM,
                v6::UNRECOGNIZED_NEXT_HEADER,
                Rest::FixedPointer(6),
            ),
            3 => m(v6::DEST_UNREACH, v6::PORT_UNREACH, Rest::Error),
            4 => m(v6::PACKET_TOO_BIG, 0, Rest::Mtu),
            9 | 10 | 13 | 15 => m(v6::DEST_UNREACH, v6::ADMIN_PROHIBITED, Rest::Error),
            // 14 (Host Precedence Violation) and unknown codes.
            _ => None,
        },
        (v4::TIME_EXCEEDED, 0) => m(v6::TIME_EXCEEDED, 0, Rest::Error),
        (v4::TIME_EXCEEDED, 1) => m(v6::TIME_EXCEEDED, 1, Rest::Error),
        (v4::PARAM_PROBLEM, 0) | (v4::PARAM_PROBLEM, 2) => {
            m(v6::PARAM_PROBLEM, v6::ERRONEOUS_HEADER, Rest::Pointer)
        }
        _ => None,
    }
}

/// Whether an ICMPv4 type is an error message (RFC 792/1812), translated or not: never answer
/// an error with an error.
#[inline(always)]
pub const fn is_error4(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Whether an ICMPv6 type is an error message (RFC 4443 §2.1: types 0–127).
#[inline(always)]
pub const fn is_error6(ty: u8) -> bool {
    ty < 128
}

/// ICMPv4 Parameter Problem pointer → ICMPv6 pointer (RFC 7915 figure 3). `None` = "n/a", drop.
#[inline(always)]
pub const fn pointer4_to_6(p: u8) -> Option<u32> {
    match p {
        0 => Some(0),        // version/IHL → version/traffic class
        1 => Some(1),        // type of service → traffic class
        2 | 3 => Some(4),    // total length → payload length
        8 => Some(7),        // TTL → hop limit
        9 => Some(6),        // protocol → next header
        12..=15 => Some(8),  // source address
        16..=19 => Some(24), // destination address
        // identification, flags/offset, checksum, beyond the header.
        _ => None,
    }
}

/// ICMPv6 Parameter Problem pointer → ICMPv4 pointer (RFC 7915 figure 6). `None` = "n/a", drop.
#[inline(always)]
pub const fn pointer6_to_4(p: u32) -> Option<u8> {
    match p {
        0 => Some(0),        // version/traffic class → version/IHL
        1 => Some(1),        // traffic class/flow label → type of service
        4 | 5 => Some(2),    // payload length → total length
        6 => Some(9),        // next header → protocol
        7 => Some(8),        // hop limit → TTL
        8..=23 => Some(12),  // source address
        24..=39 => Some(16), // destination address
        // flow label, beyond the fixed header.
        _ => None,
    }
}

/// An ICMPv6 error about a hairpinned flow (RFC 6146 §3.8) → the ICMPv6 error its ICMPv4
/// translation becomes when it is processed as arriving on the IPv4 side: both tables, one
/// after the other. `None` = dropped by either.
#[inline(always)]
pub const fn hairpin6(ty: u8, code: u8) -> Option<Mapped> {
    match icmp6_to_4(ty, code) {
        Some(m) => icmp4_to_6(m.ty, m.code),
        None => None,
    }
}

/// A Parameter Problem pointer of a hairpinned error through figures 6 and 3.
#[inline(always)]
pub const fn pointer_hairpin6(p: u32) -> Option<u32> {
    match pointer6_to_4(p) {
        Some(p4) => pointer4_to_6(p4),
        None => None,
    }
}

/// IPv4 minimum MTU (RFC 791).
pub const IPV4_MIN_MTU: u32 = 68;
/// What a translated packet gains (4 → 6) or loses (6 → 4).
const HDR_DIFF: u32 = HDR_DIFF_USIZE as u32;

/// RFC 1191 §7 plateau table, largest first.
pub const PLATEAUS: [u32; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];

/// RFC 1191 plateau for a router that sent Fragmentation Needed with MTU 0: the greatest plateau
/// below the Total Length of the packet that did not fit.
#[inline(always)]
pub const fn plateau_below(total_len: u32) -> u32 {
    let mut i = 0;
    while i < PLATEAUS.len() {
        if PLATEAUS[i] < total_len {
            return PLATEAUS[i];
        }
        i += 1;
    }
    IPV4_MIN_MTU
}

const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

const fn max(a: u32, b: u32) -> u32 {
    if a > b { a } else { b }
}

/// MTU of the Packet Too Big made from a Fragmentation Needed (RFC 7915 §4.2):
/// `minimum(advertised + 20, IPv6 next-hop MTU, IPv4 next-hop MTU + 20)`, with a zero advertised
/// MTU replaced by the RFC 1191 plateau below the inner Total Length, and never below the IPv6
/// minimum of 1280.
#[inline(always)]
pub const fn ptb_mtu(advertised: u32, inner_total_len: u32, v6_mtu: u32, v4_mtu: u32) -> u32 {
    let adv = if advertised == 0 {
        plateau_below(inner_total_len)
    } else {
        advertised
    };
    max(
        IPV6_MIN_MTU,
        min(adv + HDR_DIFF, min(v6_mtu, v4_mtu + HDR_DIFF)),
    )
}

/// MTU of the Fragmentation Needed made from a Packet Too Big (RFC 7915 §5.2):
/// `minimum(advertised − 20, IPv4 next-hop MTU, IPv6 next-hop MTU − 20)`, at least 68.
#[inline(always)]
pub const fn frag_needed_mtu(advertised: u32, v4_mtu: u32, v6_mtu: u32) -> u32 {
    max(
        IPV4_MIN_MTU,
        min(
            advertised.saturating_sub(HDR_DIFF),
            min(v4_mtu, v6_mtu.saturating_sub(HDR_DIFF)),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected ICMPv6 → ICMPv4 table, written out from RFC 7915 §5.2 line by line.
    fn expected_6to4(ty: u8, code: u8) -> Option<(u8, u8, Rest)> {
        Some(match (ty, code) {
            (128, 0) => (8, 0, Rest::Echo),
            (129, 0) => (0, 0, Rest::Echo),
            (1, 0) => (3, 1, Rest::Error),
            (1, 1) => (3, 10, Rest::Error),
            (1, 2) => (3, 1, Rest::Error),
            (1, 3) => (3, 1, Rest::Error),
            (1, 4) => (3, 3, Rest::Error),
            (2, 0) => (3, 4, Rest::Mtu),
            (3, 0) => (11, 0, Rest::Error),
            (3, 1) => (11, 1, Rest::Error),
            (4, 0) => (12, 0, Rest::Pointer),
            (4, 1) => (3, 2, Rest::Error),
            _ => return None,
        })
    }

    /// Expected ICMPv4 → ICMPv6 table, from RFC 7915 §4.2.
    fn expected_4to6(ty: u8, code: u8) -> Option<(u8, u8, Rest)> {
        Some(match (ty, code) {
            (8, 0) => (128, 0, Rest::Echo),
            (0, 0) => (129, 0, Rest::Echo),
            (3, 0) | (3, 1) => (1, 0, Rest::Error),
            (3, 2) => (4, 1, Rest::FixedPointer(6)),
            (3, 3) => (1, 4, Rest::Error),
            (3, 4) => (2, 0, Rest::Mtu),
            (3, 5) | (3, 6) | (3, 7) | (3, 8) | (3, 11) | (3, 12) => (1, 0, Rest::Error),
            (3, 9) | (3, 10) | (3, 13) | (3, 15) => (1, 1, Rest::Error),
            (11, 0) => (3, 0, Rest::Error),
            (11, 1) => (3, 1, Rest::Error),
            (12, 0) | (12, 2) => (4, 0, Rest::Pointer),
            _ => return None,
        })
    }

    #[test]
    fn every_icmpv6_type_and_code() {
        let mut translated = 0;
        for ty in 0..=255u8 {
            for code in 0..=255u8 {
                let got = icmp6_to_4(ty, code).map(|m| (m.ty, m.code, m.rest));
                assert_eq!(got, expected_6to4(ty, code), "ICMPv6 {ty}/{code}");
                if let Some((t4, ..)) = got {
                    translated += 1;
                    // Errors map to errors, queries to queries.
                    assert_eq!(is_error6(ty), is_error4(t4), "{ty}/{code}");
                }
            }
        }
        assert_eq!(translated, 12);
        // Named drops of §5.2.
        for ty in [
            130, 131, 132, 133, 134, 135, 136, 137, 139, 140, 143, 200, 201, 255,
        ] {
            assert!(icmp6_to_4(ty, 0).is_none(), "informational {ty}");
        }
        assert!(icmp6_to_4(4, 2).is_none(), "unrecognized IPv6 option");
        assert!(icmp6_to_4(1, 5).is_none() && icmp6_to_4(1, 6).is_none());
    }

    #[test]
    fn every_icmpv4_type_and_code() {
        let mut translated = 0;
        for ty in 0..=255u8 {
            for code in 0..=255u8 {
                let got = icmp4_to_6(ty, code).map(|m| (m.ty, m.code, m.rest));
                assert_eq!(got, expected_4to6(ty, code), "ICMPv4 {ty}/{code}");
                if let Some((t6, ..)) = got {
                    translated += 1;
                    assert_eq!(is_error4(ty), is_error6(t6), "{ty}/{code}");
                }
            }
        }
        assert_eq!(translated, 21);
        for ty in [4, 5, 6, 7, 9, 10, 13, 14, 15, 16, 17, 18, 42, 43] {
            assert!(icmp4_to_6(ty, 0).is_none(), "type {ty}");
        }
        assert!(icmp4_to_6(3, 14).is_none(), "host precedence violation");
        assert!(icmp4_to_6(12, 1).is_none(), "missing required option");
    }

    #[test]
    fn parameter_problem_pointers_both_ways() {
        let want4to6 = [
            Some(0),
            Some(1),
            Some(4),
            Some(4),
            None,
            None,
            None,
            None,
            Some(7),
            Some(6),
            None,
            None,
            Some(8),
            Some(8),
            Some(8),
            Some(8),
            Some(24),
            Some(24),
            Some(24),
            Some(24),
        ];
        for p in 0..=255u8 {
            let want = want4to6.get(usize::from(p)).copied().flatten();
            assert_eq!(pointer4_to_6(p), want, "v4 pointer {p}");
        }
        for p in 0..=1000u32 {
            let want = match p {
                0 => Some(0),
                1 => Some(1),
                2 | 3 => None,
                4 | 5 => Some(2),
                6 => Some(9),
                7 => Some(8),
                8..=23 => Some(12),
                24..=39 => Some(16),
                _ => None,
            };
            assert_eq!(pointer6_to_4(p), want, "v6 pointer {p}");
        }
        // Where both directions are defined, they point at the same field.
        for p in 0..40u32 {
            if let Some(p4) = pointer6_to_4(p) {
                let back = pointer4_to_6(p4).unwrap();
                assert!(back <= p, "{p} -> {p4} -> {back}");
            }
        }
    }

    #[test]
    fn fragmentation_needed_to_packet_too_big() {
        // (advertised, inner total length, v6 next-hop MTU, v4 next-hop MTU) → PTB MTU.
        let cases = [
            (1440, 1500, 1500, 1500, 1460), // +20
            (1496, 1500, 1500, 1500, 1500), // capped by the IPv6 link
            (1600, 1500, 1500, 1500, 1500),
            (1200, 1500, 1500, 1500, 1280), // IPv6 minimum
            (1400, 1500, 9000, 1300, 1320), // capped by the IPv4 next hop + 20
            (0, 1500, 9000, 9000, 1512),    // plateau 1492 below 1500, + 20
            (0, 1400, 9000, 9000, 1280),    // plateau 1006 → IPv6 minimum
            (0, 9000, 9000, 9000, 8186),    // plateau 8166
            (65535, 1500, 65535, 65535, 65535),
        ];
        for (adv, tl, m6, m4, want) in cases {
            assert_eq!(ptb_mtu(adv, tl, m6, m4), want, "{adv} {tl} {m6} {m4}");
        }
    }

    #[test]
    fn packet_too_big_to_fragmentation_needed() {
        let cases = [
            (1360, 1500, 1500, 1340),
            (1600, 1500, 1500, 1480), // capped by the IPv6 next hop - 20
            (1600, 1400, 9000, 1400), // capped by the IPv4 link
            (1280, 1500, 1500, 1260),
            (0, 1500, 1500, 68),
            (1500, 1500, 40, 68),
        ];
        for (adv, m4, m6, want) in cases {
            assert_eq!(frag_needed_mtu(adv, m4, m6), want, "{adv} {m4} {m6}");
        }
    }

    #[test]
    fn plateaus() {
        assert_eq!(plateau_below(1500), 1492);
        assert_eq!(plateau_below(1492), 1006);
        assert_eq!(plateau_below(65535), 32000);
        assert_eq!(plateau_below(65536), 65535);
        assert_eq!(plateau_below(68), 68);
        assert_eq!(plateau_below(0), 68);
    }

    /// Hairpinned errors keep their meaning where ICMPv4 has the same one, and take ICMPv4's
    /// coarser one where it has not (written out from both RFC 7915 tables).
    #[test]
    fn hairpinned_errors_through_both_tables() {
        let expected = |ty: u8, code: u8| -> Option<(u8, u8, Rest)> {
            Some(match (ty, code) {
                (128, 0) => (128, 0, Rest::Echo),
                (129, 0) => (129, 0, Rest::Echo),
                // No route, beyond scope, address unreachable: ICMPv4 host unreachable.
                (1, 0 | 2 | 3) => (1, 0, Rest::Error),
                (1, 1) => (1, 1, Rest::Error),
                (1, 4) => (1, 4, Rest::Error),
                (2, 0) => (2, 0, Rest::Mtu),
                (3, 0) => (3, 0, Rest::Error),
                (3, 1) => (3, 1, Rest::Error),
                (4, 0) => (4, 0, Rest::Pointer),
                // Unrecognized next header: protocol unreachable, back as a pointer to it.
                (4, 1) => (4, 1, Rest::FixedPointer(6)),
                _ => return None,
            })
        };
        for ty in 0..=255u8 {
            for code in 0..=255u8 {
                let got = hairpin6(ty, code).map(|m| (m.ty, m.code, m.rest));
                assert_eq!(got, expected(ty, code), "type {ty} code {code}");
            }
        }
    }

    #[test]
    fn hairpinned_parameter_problem_pointers() {
        for (p, want) in [
            (0, Some(0)),
            (1, Some(1)),
            (2, None),
            (4, Some(4)),
            (5, Some(4)),
            (6, Some(6)),
            (7, Some(7)),
            (8, Some(8)),
            (23, Some(8)),
            (24, Some(24)),
            (39, Some(24)),
            (40, None),
        ] {
            assert_eq!(pointer_hairpin6(p), want, "pointer {p}");
        }
    }
}
