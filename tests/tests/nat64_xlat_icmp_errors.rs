//! ICMP errors at the NAT64 translator through `BPF_PROG_TEST_RUN`: the ones it generates (hop
//! limit and TTL expired) and the ones it translates (RFC 7915 §4.2 and §5.2: every type and
//! code both ways, Parameter Problem pointers, Packet Too Big ↔ Fragmentation Needed MTUs, inner
//! packets of echo and TCP mapped back, errors of any size cut to 576 and 1280 bytes).

use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
};
use sixlane_testkit::{fixture::verdict, packet};
use sixlane_tests::nat64::{
    self as n, Pseudo, V4, flags,
    xlat::{
        POD, POOL, PREFIX, ROUTER, SRV, check, default_cfg, env, pod_tcp, srv6, v4_echo_id, v4_id,
        v4_sport,
    },
};

#[test]
fn hop_limit_and_ttl_expire_at_the_translator() {
    let mut e = env(&default_cfg());
    // Hop limit 1: ICMPv6 Time Exceeded from the translator's Pref64::pool address, quoting the
    // packet (RFC 7915 §5.4, RFC 4443 §3.3).
    let up = n::udp(40000, 33434, b"traceroute", Pseudo::V6(POD, srv6()), false);
    let orig = n::ipv6(0, 0, 1, POD, srv6(), n::UDP, &up);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&orig));
    let me = n::embed96(PREFIX, POOL);
    let want = n::ipv6(
        0,
        0,
        64,
        me,
        POD,
        n::ICMPV6,
        &n::icmp(3, 0, [0; 4], &orig, Pseudo::V6(me, POD)),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&want)),
        Reason::Nat64HopLimit,
    );

    // TTL 1 on a reply: ICMPv4 Time Exceeded from the pool address back to the server.
    let t = e.udp_session(POD, 40000, 53);
    let h = V4 {
        ttl: 1,
        id: 77,
        ..V4::new(SRV, POOL)
    };
    let orig = n::ipv4(
        &h,
        n::UDP,
        &n::udp(53, t, b"late", Pseudo::V4(SRV, POOL), false),
    );
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&orig));
    let h = V4 {
        id: v4_id(&out.pkt),
        ..V4::new(POOL, SRV)
    };
    let want = n::ipv4(&h, n::ICMP, &n::icmp(11, 0, [0; 4], &orig, Pseudo::None));
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_uplink(&want)),
        Reason::Nat64TtlExceeded,
    );

    // Never an error about an error.
    let err = n::icmp(1, 4, [0; 4], &[0u8; 48], Pseudo::V6(POD, srv6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 1, POD, srv6(), n::ICMPV6, &err)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64IcmpDropped);
}

/// The packet the translator sent for session POD:40000 → SRV:53 (t), as an IPv4 router quotes
/// it: header + UDP + payload, all 12 bytes of payload (a complete datagram, so the translated
/// inner checksum can be verified too).
fn quoted_v4(t: u16) -> Vec<u8> {
    let h = V4 {
        tos: 0x10,
        id: 0x4321,
        df: false,
        ttl: 17,
        ..V4::new(POOL, SRV)
    };
    n::ipv4(
        &h,
        n::UDP,
        &n::udp(t, 53, b"quoted query", Pseudo::V4(POOL, SRV), false),
    )
}

/// What that quote becomes: IPv6 from the pod, hop limit = the quoted TTL, TC = its TOS.
fn quoted_v4_translated() -> Vec<u8> {
    n::ipv6(
        0x10,
        0,
        17,
        POD,
        srv6(),
        n::UDP,
        &n::udp(40000, 53, b"quoted query", Pseudo::V6(POD, srv6()), false),
    )
}

/// Every ICMPv4 error type with every code, about a NAT64 packet: translated exactly as RFC
/// 7915 §4.2 says (type, code, MTU, pointer, inner packet), or dropped and counted.
#[test]
fn every_icmpv4_error_type_and_code() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    let r6 = n::embed96(PREFIX, ROUTER);
    let mut translated = 0u64;
    let mut dropped = 0u64;
    let before = e.counters();
    for ty in [3u8, 4, 5, 11, 12] {
        for code in 0..=255u8 {
            // The 4 bytes after the checksum: a pointer (9 = protocol) or an MTU (1400).
            let rest = match (ty, code) {
                (3, 4) => [0, 0, 0x05, 0x78],
                (12, _) => [9, 0, 0, 0],
                _ => [0; 4],
            };
            let h = V4 {
                tos: 0xa0,
                ttl: 30,
                ..V4::new(ROUTER, POOL)
            };
            let err = n::ipv4(
                &h,
                n::ICMP,
                &n::icmp(ty, code, rest, &quoted_v4(t), Pseudo::None),
            );
            let (v, out) = e.run_fast(PROG_FROM_UPLINK, &e.uplink_frame(&err));
            match n::rfc7915_icmp4_to_6(ty, code) {
                Some((ty6, code6, kind)) => {
                    let rest6 = match kind {
                        n::RestKind::Mtu => 1420u32.to_be_bytes(),
                        n::RestKind::Pointer => 6u32.to_be_bytes(),
                        n::RestKind::NextHeaderPointer => 6u32.to_be_bytes(),
                        _ => [0; 4],
                    };
                    let inner = quoted_v4_translated();
                    let want = e.to_pod(&n::ipv6(
                        0xa0,
                        0,
                        29,
                        r6,
                        POD,
                        n::ICMPV6,
                        &n::icmp(ty6, code6, rest6, &inner, Pseudo::V6(r6, POD)),
                    ));
                    assert_eq!(v, verdict::REDIRECT, "ICMPv4 {ty}/{code}");
                    assert!(
                        out == want,
                        "ICMPv4 {ty}/{code}:\n  got  {}\n  want {}\n  {:02x?}\n  {:02x?}",
                        packet::describe(&out),
                        packet::describe(&want),
                        out,
                        want
                    );
                    packet::verify_checksums(&out).unwrap();
                    // The inner packet is complete: its UDP checksum must verify too.
                    packet::verify_checksums(&n::eth(
                        [0; 6],
                        [0; 6],
                        n::ETH_P_IPV6,
                        &out[14 + 48..],
                    ))
                    .unwrap_or_else(|er| panic!("inner of {ty}/{code}: {er}"));
                    translated += 1;
                }
                None => {
                    assert_eq!(v, verdict::SHOT, "ICMPv4 {ty}/{code} must be dropped");
                    dropped += 1;
                }
            }
        }
    }
    let after = e.counters();
    let d = |r: Reason| after[r.name()] - before.get(r.name()).copied().unwrap_or(0);
    assert_eq!(
        translated, 19,
        "RFC 7915 translates 19 ICMPv4 error type/codes"
    );
    assert_eq!(d(Reason::Nat64IcmpErrIn), translated);
    assert_eq!(d(Reason::Nat64IcmpDropped), dropped);
}

/// Every ICMPv6 error type (0–127) with every code, from the pod about a packet it received
/// through NAT64: translated per RFC 7915 §5.2 with the inner packet, or dropped and counted.
#[test]
fn every_icmpv6_error_type_and_code() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    // The packet the pod got: SRV' → POD, as the translator delivered it.
    let delivered = n::ipv6(
        0x20,
        0,
        40,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"answer!", Pseudo::V6(srv6(), POD), false),
    );
    let inner4 = n::ipv4(
        &V4 {
            tos: 0x20,
            ttl: 40,
            ..V4::new(SRV, POOL)
        },
        n::UDP,
        &n::udp(53, t, b"answer!", Pseudo::V4(SRV, POOL), false),
    );
    let mut translated = 0u64;
    let mut dropped = 0u64;
    let before = e.counters();
    for ty in 0..=127u8 {
        for code in 0..=255u8 {
            let rest = match ty {
                2 => 1400u32.to_be_bytes(),
                4 => 24u32.to_be_bytes(),
                _ => [0; 4],
            };
            let err = n::icmp(ty, code, rest, &delivered, Pseudo::V6(POD, srv6()));
            let input = e.pod_frame(&n::ipv6(0x48, 0, 64, POD, srv6(), n::ICMPV6, &err));
            let (v, out) = e.run_fast(PROG_FROM_POD, &input);
            match n::rfc7915_icmp6_to_4(ty, code) {
                Some((ty4, code4, kind)) => {
                    let rest4 = match kind {
                        // minimum(1400 − 20, IPv4 link 1500, IPv6 link 1500 − 20)
                        n::RestKind::Mtu => [0, 0, 0x05, 0x64],
                        n::RestKind::Pointer => [16, 0, 0, 0],
                        _ => [0; 4],
                    };
                    let h = V4 {
                        tos: 0x48,
                        id: v4_id(&out),
                        ttl: 63,
                        ..V4::new(POOL, SRV)
                    };
                    let want = e.to_uplink(&n::ipv4(
                        &h,
                        n::ICMP,
                        &n::icmp(ty4, code4, rest4, &inner4, Pseudo::None),
                    ));
                    assert_eq!(v, verdict::REDIRECT, "ICMPv6 {ty}/{code}");
                    assert!(
                        out == want,
                        "ICMPv6 {ty}/{code}:\n  got  {}\n  want {}\n  {:02x?}\n  {:02x?}",
                        packet::describe(&out),
                        packet::describe(&want),
                        out,
                        want
                    );
                    packet::verify_checksums(&out).unwrap();
                    packet::verify_checksums(&n::eth([0; 6], [0; 6], n::ETH_P_IP, &out[14 + 28..]))
                        .unwrap_or_else(|er| panic!("inner of {ty}/{code}: {er}"));
                    translated += 1;
                }
                None => {
                    assert_eq!(v, verdict::SHOT, "ICMPv6 {ty}/{code} must be dropped");
                    dropped += 1;
                }
            }
        }
    }
    let after = e.counters();
    let d = |r: Reason| after[r.name()] - before.get(r.name()).copied().unwrap_or(0);
    assert_eq!(
        translated, 10,
        "RFC 7915 translates 10 ICMPv6 error type/codes"
    );
    assert_eq!(d(Reason::Nat64IcmpErrOut), translated);
    assert_eq!(d(Reason::Nat64IcmpDropped), dropped);
}

/// Parameter Problem pointers (RFC 7915 figures 3 and 6), every value.
#[test]
fn parameter_problem_pointers() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    let r6 = n::embed96(PREFIX, ROUTER);
    for p in 0..=255u8 {
        let err = n::ipv4(
            &V4::new(ROUTER, POOL),
            n::ICMP,
            &n::icmp(12, 0, [p, 0, 0, 0], &quoted_v4(t), Pseudo::None),
        );
        let (v, out) = e.run_fast(PROG_FROM_UPLINK, &e.uplink_frame(&err));
        match n::rfc7915_pointer4_to_6(p) {
            Some(p6) => {
                let want = e.to_pod(&n::ipv6(
                    0,
                    0,
                    63,
                    r6,
                    POD,
                    n::ICMPV6,
                    &n::icmp(
                        4,
                        0,
                        p6.to_be_bytes(),
                        &quoted_v4_translated(),
                        Pseudo::V6(r6, POD),
                    ),
                ));
                assert_eq!((v, &out), (verdict::REDIRECT, &want), "IPv4 pointer {p}");
            }
            None => assert_eq!(v, verdict::SHOT, "IPv4 pointer {p}"),
        }
    }
    let delivered = n::ipv6(
        0,
        0,
        40,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"a", Pseudo::V6(srv6(), POD), false),
    );
    let inner4 = n::ipv4(
        &V4 {
            ttl: 40,
            ..V4::new(SRV, POOL)
        },
        n::UDP,
        &n::udp(53, t, b"a", Pseudo::V4(SRV, POOL), false),
    );
    for p in 0..=60u32 {
        let err = n::icmp(4, 0, p.to_be_bytes(), &delivered, Pseudo::V6(POD, srv6()));
        let (v, out) = e.run_fast(
            PROG_FROM_POD,
            &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &err)),
        );
        match n::rfc7915_pointer6_to_4(p) {
            Some(p4) => {
                let h = V4 {
                    id: v4_id(&out),
                    ttl: 63,
                    ..V4::new(POOL, SRV)
                };
                let want = e.to_uplink(&n::ipv4(
                    &h,
                    n::ICMP,
                    &n::icmp(12, 0, [p4, 0, 0, 0], &inner4, Pseudo::None),
                ));
                assert_eq!((v, &out), (verdict::REDIRECT, &want), "IPv6 pointer {p}");
            }
            None => assert_eq!(v, verdict::SHOT, "IPv6 pointer {p}"),
        }
    }
}

/// Fragmentation Needed ↔ Packet Too Big: the MTU adjusted by the 20-byte header difference,
/// capped by the links, RFC 1191 plateaus for an MTU of zero, never below 1280 for IPv6.
#[test]
fn frag_needed_and_packet_too_big_mtu_math() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    // (advertised IPv4 MTU, quoted total length) → IPv6 MTU. Both links are 1500.
    for (adv, total, want_mtu) in [
        (1400u16, 0u16, 1420u32),
        (1496, 0, 1500),
        (1600, 0, 1500),
        (1200, 0, 1280),
        (576, 0, 1280),
        (0, 1500, 1500),
        (0, 9000, 1500),
        (0, 1400, 1280),
    ] {
        let mut quoted = quoted_v4(t);
        if total != 0 {
            // Routers without RFC 1191 quote the header whose Total Length did not fit.
            quoted[2..4].copy_from_slice(&total.to_be_bytes());
            quoted[10] = 0;
            quoted[11] = 0;
            let c = packet::checksum::compute(&quoted[..20], 0);
            quoted[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let m = adv.to_be_bytes();
        let err = n::ipv4(
            &V4::new(ROUTER, POOL),
            n::ICMP,
            &n::icmp(3, 4, [0, 0, m[0], m[1]], &quoted, Pseudo::None),
        );
        let (v, out) = e.run_fast(PROG_FROM_UPLINK, &e.uplink_frame(&err));
        assert_eq!(v, verdict::REDIRECT, "adv {adv}");
        let got = u32::from_be_bytes([out[14 + 44], out[14 + 45], out[14 + 46], out[14 + 47]]);
        assert_eq!(
            (out[14 + 40], got),
            (2, want_mtu),
            "advertised {adv}, total {total}"
        );
        packet::verify_checksums(&out).unwrap();
    }
    // IPv6 → IPv4: minimum(advertised − 20, IPv4 link, IPv6 link − 20).
    let delivered = n::ipv6(
        0,
        0,
        40,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"a", Pseudo::V6(srv6(), POD), false),
    );
    for (adv, want_mtu) in [(1280u32, 1260u16), (1360, 1340), (1500, 1480), (9000, 1480)] {
        let err = n::icmp(2, 0, adv.to_be_bytes(), &delivered, Pseudo::V6(POD, srv6()));
        let (v, out) = e.run_fast(
            PROG_FROM_POD,
            &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &err)),
        );
        assert_eq!(v, verdict::REDIRECT);
        assert_eq!((out[14 + 20], out[14 + 21]), (3, 4));
        assert_eq!(
            u16::from_be_bytes([out[14 + 26], out[14 + 27]]),
            want_mtu,
            "advertised {adv}"
        );
        packet::verify_checksums(&out).unwrap();
    }
}

/// ICMP errors about echo messages and about TCP: identifiers and ports in the inner packet are
/// mapped back, inner checksums follow (ICMPv6 includes the pseudo-header, ICMPv4 does not).
#[test]
fn errors_quoting_echo_and_tcp() {
    let mut e = env(&default_cfg());
    let r6 = n::embed96(PREFIX, ROUTER);
    // The pod pings SRV; a router says the TTL ran out on the way.
    let req = n::icmp(
        128,
        0,
        n::echo_rest(0xbeef, 3),
        b"probe",
        Pseudo::V6(POD, srv6()),
    );
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &req)),
    );
    let id = v4_echo_id(&out.pkt);
    let sent = n::ipv4(
        &V4 {
            ttl: 1,
            ..V4::new(POOL, SRV)
        },
        n::ICMP,
        &n::icmp(8, 0, n::echo_rest(id, 3), b"probe", Pseudo::None),
    );
    let err = n::ipv4(
        &V4::new(ROUTER, POOL),
        n::ICMP,
        &n::icmp(11, 0, [0; 4], &sent, Pseudo::None),
    );
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&err));
    let inner = n::ipv6(
        0,
        0,
        1,
        POD,
        srv6(),
        n::ICMPV6,
        &n::icmp(
            128,
            0,
            n::echo_rest(0xbeef, 3),
            b"probe",
            Pseudo::V6(POD, srv6()),
        ),
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        r6,
        POD,
        n::ICMPV6,
        &n::icmp(3, 0, [0; 4], &inner, Pseudo::V6(r6, POD)),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64IcmpErrIn);

    // The pod answers an echo reply it got with an error (reverse direction, echo inner).
    let rep = n::icmp(0, 0, n::echo_rest(id, 3), b"probe", Pseudo::None);
    e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::ICMP, &rep)),
    );
    let got = n::ipv6(
        0,
        0,
        63,
        srv6(),
        POD,
        n::ICMPV6,
        &n::icmp(
            129,
            0,
            n::echo_rest(0xbeef, 3),
            b"probe",
            Pseudo::V6(srv6(), POD),
        ),
    );
    let err6 = n::icmp(4, 0, 7u32.to_be_bytes(), &got, Pseudo::V6(POD, srv6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &err6)),
    );
    let inner4 = n::ipv4(
        &V4 {
            ttl: 63,
            ..V4::new(SRV, POOL)
        },
        n::ICMP,
        &n::icmp(0, 0, n::echo_rest(id, 3), b"probe", Pseudo::None),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let want = e.to_uplink(&n::ipv4(
        &h,
        n::ICMP,
        &n::icmp(12, 0, [8, 0, 0, 0], &inner4, Pseudo::None),
    ));
    check(
        &out,
        verdict::REDIRECT,
        Some(&want),
        Reason::Nat64IcmpErrOut,
    );

    // TCP: a router quoting only 8 bytes of the segment (RFC 792's minimum): ports mapped, the
    // checksum is not in the quote.
    let syn = pod_tcp(&e, 42000, flags::SYN, &[], &[]);
    let out = e.run(PROG_FROM_POD, &syn);
    let t = v4_sport(&out.pkt);
    let seg = n::tcp(
        t,
        80,
        1000,
        2000,
        flags::SYN,
        &[],
        &[],
        Pseudo::V4(POOL, SRV),
    );
    let mut quote = n::ipv4(
        &V4 {
            df: false,
            ttl: 5,
            ..V4::new(POOL, SRV)
        },
        n::TCP,
        &seg,
    );
    quote.truncate(28);
    let err = n::ipv4(
        &V4::new(ROUTER, POOL),
        n::ICMP,
        &n::icmp(3, 1, [0; 4], &quote, Pseudo::None),
    );
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&err));
    assert_eq!(out.verdict, verdict::REDIRECT);
    let inner = &out.pkt[14 + 48..];
    assert_eq!(&inner[8..24], &POD.octets(), "inner source is the pod");
    assert_eq!(
        &inner[24..40],
        &srv6().octets(),
        "inner destination is SRV'"
    );
    assert_eq!(
        u16::from_be_bytes([inner[40], inner[41]]),
        42000,
        "inner source port is the pod's"
    );
    assert_eq!((out.pkt[14 + 40], out.pkt[14 + 41]), (1, 0));
    packet::verify_checksums(&out.pkt).unwrap();
    // The whole segment quoted: the inner TCP checksum is translated and verifies.
    let quote = n::ipv4(
        &V4 {
            ttl: 5,
            ..V4::new(POOL, SRV)
        },
        n::TCP,
        &seg,
    );
    let err = n::ipv4(
        &V4::new(ROUTER, POOL),
        n::ICMP,
        &n::icmp(3, 3, [0; 4], &quote, Pseudo::None),
    );
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&err));
    let inner = n::ipv6(
        0,
        0,
        5,
        POD,
        srv6(),
        n::TCP,
        &n::tcp(
            42000,
            80,
            1000,
            2000,
            flags::SYN,
            &[],
            &[],
            Pseudo::V6(POD, srv6()),
        ),
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        r6,
        POD,
        n::ICMPV6,
        &n::icmp(1, 4, [0; 4], &inner, Pseudo::V6(r6, POD)),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64IcmpErrIn);

    // Errors naming no session: IPv4 ones are left to the kernel (they may be the node's own),
    // IPv6 ones are dropped.
    let stray = n::ipv4(
        &V4::new(POOL, SRV),
        n::UDP,
        &n::udp(61099, 53, b"?", Pseudo::V4(POOL, SRV), false),
    );
    let err = n::ipv4(
        &V4::new(ROUTER, POOL),
        n::ICMP,
        &n::icmp(3, 3, [0; 4], &stray, Pseudo::None),
    );
    let input = e.uplink_frame(&err);
    check(
        &e.run(PROG_FROM_UPLINK, &input),
        verdict::NEXT,
        Some(&input),
        Reason::Pass,
    );
    let stray6 = n::ipv6(
        0,
        0,
        40,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 9, b"?", Pseudo::V6(srv6(), POD), false),
    );
    let err6 = n::icmp(1, 4, [0; 4], &stray6, Pseudo::V6(POD, srv6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &err6)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64IcmpNoSession);
}

/// A payload of `n` bytes that is not all one value (a cut at the wrong place changes the sum).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// ICMPv6 errors of any size about a delivered UDP datagram become ICMPv4 errors of at most 576
/// bytes (RFC 1812 §4.3.2.3): the quote is cut, the outer Total Length and the ICMPv4 checksum
/// cover what is sent, and the quoted header keeps the length of the datagram it describes.
#[test]
fn icmpv6_errors_of_any_size_are_cut_to_576_bytes() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    // `d`: the delivered IPv6 packet's length; its error is 48 + d bytes, the ICMPv4
    // translation 8 + d before the cut (575, 576 and 577 around the boundary; ~1,400 is a
    // full-sized datagram quoted whole).
    for d in [100usize, 567, 568, 569, 1232, 1400, 1452] {
        let payload = pattern(d - 48);
        let delivered = n::ipv6(
            0x20,
            0,
            40,
            srv6(),
            POD,
            n::UDP,
            &n::udp(53, 40000, &payload, Pseudo::V6(srv6(), POD), false),
        );
        let err = n::icmp(1, 4, [0; 4], &delivered, Pseudo::V6(POD, srv6()));
        let input = e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &err));
        let out = e.run(PROG_FROM_POD, &input);
        let mut inner4 = n::ipv4(
            &V4 {
                tos: 0x20,
                ttl: 40,
                df: d - 20 > 1260,
                ..V4::new(SRV, POOL)
            },
            n::UDP,
            &n::udp(53, t, &payload, Pseudo::V4(SRV, POOL), false),
        );
        inner4.truncate(576 - 28);
        let h = V4 {
            id: v4_id(&out.pkt),
            ttl: 63,
            ..V4::new(POOL, SRV)
        };
        let want = e.to_uplink(&n::ipv4(
            &h,
            n::ICMP,
            &n::icmp(3, 3, [0; 4], &inner4, Pseudo::None),
        ));
        check(
            &out,
            verdict::REDIRECT,
            Some(&want),
            Reason::Nat64IcmpErrOut,
        );
        assert_eq!(out.pkt.len() - 14, (d + 8).min(576), "delivered {d}");
    }
}

/// ICMPv4 errors quoting up to a full-sized IPv4 packet become ICMPv6 errors of at most 1280
/// bytes (RFC 4443 §2.4 (c)) whose checksum covers what is sent; the quoted header keeps the
/// length of the packet it describes.
#[test]
fn icmpv4_errors_of_any_size_are_cut_to_1280_bytes() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    let r6 = n::embed96(PREFIX, ROUTER);
    // `q`: the quoted IPv4 packet's length; the translation is 68 + q bytes before the cut
    // (1279, 1280 and 1281 around the boundary; 1,400 and 1,472 are full-sized packets).
    for q in [100usize, 1211, 1212, 1213, 1400, 1472] {
        let payload = pattern(q - 28);
        let quoted = n::ipv4(
            &V4 {
                tos: 0x10,
                id: 0x4321,
                ttl: 17,
                ..V4::new(POOL, SRV)
            },
            n::UDP,
            &n::udp(t, 53, &payload, Pseudo::V4(POOL, SRV), false),
        );
        // Fragmentation Needed (MTU 1400), as a router quoting the whole packet sends it.
        let err = n::ipv4(
            &V4 {
                tos: 0xa0,
                ttl: 30,
                ..V4::new(ROUTER, POOL)
            },
            n::ICMP,
            &n::icmp(3, 4, [0, 0, 0x05, 0x78], &quoted, Pseudo::None),
        );
        let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&err));
        let mut inner = n::ipv6(
            0x10,
            0,
            17,
            POD,
            srv6(),
            n::UDP,
            &n::udp(40000, 53, &payload, Pseudo::V6(POD, srv6()), false),
        );
        inner.truncate(1280 - 48);
        let want = e.to_pod(&n::ipv6(
            0xa0,
            0,
            29,
            r6,
            POD,
            n::ICMPV6,
            &n::icmp(2, 0, 1420u32.to_be_bytes(), &inner, Pseudo::V6(r6, POD)),
        ));
        check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64IcmpErrIn);
        assert_eq!(out.pkt.len() - 14, (q + 68).min(1280), "quoted {q}");
    }
}
