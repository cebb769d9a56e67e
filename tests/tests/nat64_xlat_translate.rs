//! NAT64 translation of UDP and ICMP echo both ways (RFC 7915 header fields, RFC 6052
//! addresses of every prefix length, checksums including the ones that fold to zero), through
//! `BPF_PROG_TEST_RUN`: packets in, packets out, compared field by field with packets built
//! independently from the RFCs (`sixlane_tests::nat64`), every output's checksums verified by
//! the testkit's own RFC 1071 code.

use std::net::{Ipv4Addr, Ipv6Addr};

use sixlane_agent::nat64::Span;
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
};
use sixlane_testkit::fixture::verdict;
use sixlane_tests::nat64::{
    self as n, Pseudo, V4,
    xlat::{
        POD, POOL, PREFIX, SRV, check, default_cfg, env, free_port, srv6, v4_echo_id, v4_id,
        v4_sport,
    },
};

#[test]
fn udp_both_ways_with_tos_ttl_df_and_checksums() {
    let mut e = env(&default_cfg());
    let payload = b"nat64 over udp";
    let up = n::udp(40000, 53, payload, Pseudo::V6(POD, srv6()), false);
    let input = e.pod_frame(&n::ipv6(0xb8, 0x12345, 64, POD, srv6(), n::UDP, &up));
    let out = e.run(PROG_FROM_POD, &input);
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    let t = v4_sport(&out.pkt);
    assert!(
        (61001..=61100).contains(&t),
        "port {t} outside the pool range"
    );
    // RFC 7915 §5.1: TOS = traffic class, TTL = hop limit − 1, DF clear ≤ 1260 bytes, flow
    // label dropped, Identification from the generator.
    let h = V4 {
        tos: 0xb8,
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let want = e.to_uplink(&n::ipv4(
        &h,
        n::UDP,
        &n::udp(t, 53, payload, Pseudo::V4(POOL, SRV), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);

    // The reply, RFC 7915 §4.1: traffic class = TOS, hop limit = TTL − 1, flow label 0.
    let down = n::udp(53, t, b"answer", Pseudo::V4(SRV, POOL), false);
    let h = V4 {
        tos: 0x28,
        ttl: 50,
        ..V4::new(SRV, POOL)
    };
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&h, n::UDP, &down)),
    );
    let want = e.to_pod(&n::ipv6(
        0x28,
        0,
        49,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"answer", Pseudo::V6(srv6(), POD), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InPeer);

    // Endpoint-independent mapping: the same pod port to another server keeps (T, t).
    let other = n::embed96(PREFIX, Ipv4Addr::new(198, 18, 1, 11));
    let up = n::udp(40000, 53, payload, Pseudo::V6(POD, other), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, other, n::UDP, &up)),
    );
    assert_eq!(
        v4_sport(&out.pkt),
        t,
        "same binding for the same pod transport address"
    );

    // DF above 1260 bytes of IPv4.
    let big = vec![7u8; 1300];
    let up = n::udp(40000, 53, &big, Pseudo::V6(POD, srv6()), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up)),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        df: true,
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let want = e.to_uplink(&n::ipv4(
        &h,
        n::UDP,
        &n::udp(t, 53, &big, Pseudo::V4(POOL, SRV), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);
}

#[test]
fn icmp_echo_both_ways_with_identifier_mapping() {
    let mut e = env(&default_cfg());
    let body = b"ping payload, odd";
    let req = n::icmp(
        128,
        0,
        n::echo_rest(0x1234, 7),
        body,
        Pseudo::V6(POD, srv6()),
    );
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &req)),
    );
    let id = v4_echo_id(&out.pkt);
    assert!(
        (61001..=61100).contains(&id),
        "identifier {id} from the ICMP range"
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let want = n::ipv4(
        &h,
        n::ICMP,
        &n::icmp(8, 0, n::echo_rest(id, 7), body, Pseudo::None),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_uplink(&want)),
        Reason::Nat64Out,
    );

    let rep = n::icmp(0, 0, n::echo_rest(id, 7), body, Pseudo::None);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::ICMP, &rep)),
    );
    let want = n::ipv6(
        0,
        0,
        63,
        srv6(),
        POD,
        n::ICMPV6,
        &n::icmp(
            129,
            0,
            n::echo_rest(0x1234, 7),
            body,
            Pseudo::V6(srv6(), POD),
        ),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&want)),
        Reason::Nat64InPeer,
    );

    // Echo requests to the pool address are the node's, replies with unknown identifiers too.
    let req4 = n::icmp(8, 0, n::echo_rest(id, 1), b"", Pseudo::None);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::ICMP, &req4)),
    );
    check(&out, verdict::NEXT, None, Reason::Pass);
    let rep4 = n::icmp(0, 0, n::echo_rest(free_port(&[id]), 1), b"", Pseudo::None);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::ICMP, &rep4)),
    );
    check(&out, verdict::NEXT, None, Reason::Pass);
    // A pod's echo reply answers nothing without a session (only static bindings let IPv4
    // hosts ping pods); informational messages to the prefix are not translated.
    for (ty, reason) in [
        (129u8, Reason::Nat64NoSession),
        (130, Reason::Nat64IcmpDropped),
        (133, Reason::Nat64IcmpDropped),
        (135, Reason::Nat64IcmpDropped),
        (200, Reason::Nat64IcmpDropped),
    ] {
        let m = n::icmp(ty, 0, [0; 4], b"", Pseudo::V6(POD, srv6()));
        let out = e.run(
            PROG_FROM_POD,
            &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &m)),
        );
        check(&out, verdict::SHOT, None, reason);
    }
}

#[test]
fn ipv4_zero_udp_checksum_and_options() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    // RFC 7915 §4.5: a zero IPv4 UDP checksum is computed for IPv6.
    for len in [0usize, 1, 63, 64, 65, 1000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let down = n::udp(53, t, &payload, Pseudo::V4(SRV, POOL), true);
        let out = e.run(
            PROG_FROM_UPLINK,
            &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::UDP, &down)),
        );
        let want = n::ipv6(
            0,
            0,
            63,
            srv6(),
            POD,
            n::UDP,
            &n::udp(53, 40000, &payload, Pseudo::V6(srv6(), POD), false),
        );
        check(
            &out,
            verdict::REDIRECT,
            Some(&e.to_pod(&want)),
            Reason::Nat64InPeer,
        );
    }
    // IPv4 options are dropped (RFC 7915 §4.1).
    let h = V4 {
        options: &[1, 1, 1, 0],
        ..V4::new(SRV, POOL)
    };
    let down = n::udp(53, t, b"opts", Pseudo::V4(SRV, POOL), false);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&h, n::UDP, &down)),
    );
    let want = n::ipv6(
        0,
        0,
        63,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"opts", Pseudo::V6(srv6(), POD), false),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&want)),
        Reason::Nat64InPeer,
    );
}

/// A UDP checksum that comes out as 0 after translation must be sent as 0xffff (RFC 768; zero
/// means "none" over IPv4 and is invalid over IPv6).
#[test]
fn checksum_that_folds_to_zero() {
    let mut e = env(&default_cfg());
    let t = e.udp_session(POD, 40000, 53);
    // Find a 2-byte payload whose translated (IPv4) checksum is 0xffff-after-complement.
    let payload = (0..=u16::MAX)
        .map(|v| v.to_be_bytes())
        .find(|p| {
            let u = n::udp(t, 53, p, Pseudo::V4(POOL, SRV), false);
            u[6] == 0xff && u[7] == 0xff
        })
        .expect("some payload checksums to 0xffff");
    let up = n::udp(40000, 53, &payload, Pseudo::V6(POD, srv6()), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up)),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let want = e.to_uplink(&n::ipv4(
        &h,
        n::UDP,
        &n::udp(t, 53, &payload, Pseudo::V4(POOL, SRV), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);
    assert_eq!(&out.pkt[14 + 20 + 6..14 + 20 + 8], &[0xff, 0xff]);
}

/// Every RFC 6052 prefix length: destinations extracted, replies' sources embedded, the
/// u-octet and suffix of non-canonical addresses refused.
#[test]
fn every_prefix_length() {
    let base: Ipv6Addr = "2001:db8:122:344::".parse().unwrap();
    for len in [32u8, 40, 48, 56, 64, 96] {
        let net = ipnet::Ipv6Net::new(base, len).unwrap().trunc();
        let cfg = n::config(
            &net.to_string(),
            &[POOL],
            &["fd00:10::/64"],
            Span::new(61001, 61100),
        );
        let mut e = env(&cfg);
        let dst = n::embed(base, len, SRV);
        let up = n::udp(40000, 53, b"q", Pseudo::V6(POD, dst), false);
        let out = e.run(
            PROG_FROM_POD,
            &e.pod_frame(&n::ipv6(0, 0, 64, POD, dst, n::UDP, &up)),
        );
        assert_eq!(
            out.verdict,
            verdict::REDIRECT,
            "/{len} {dst}: {:?}",
            out.counted
        );
        assert_eq!(&out.pkt[14 + 16..14 + 20], &SRV.octets(), "/{len}");
        let t = v4_sport(&out.pkt);
        let down = n::udp(53, t, b"a", Pseudo::V4(SRV, POOL), false);
        let out = e.run(
            PROG_FROM_UPLINK,
            &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::UDP, &down)),
        );
        let want = e.to_pod(&n::ipv6(
            0,
            0,
            63,
            dst,
            POD,
            n::UDP,
            &n::udp(53, 40000, b"a", Pseudo::V6(dst, POD), false),
        ));
        check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InPeer);
        if len < 96 {
            // u-octet set, then a suffix bit set: not canonical, refused.
            for byte in [8usize, 15] {
                let mut bad = dst.octets();
                bad[byte] |= 1;
                let bad = Ipv6Addr::from(bad);
                let up = n::udp(40000, 53, b"q", Pseudo::V6(POD, bad), false);
                let out = e.run(
                    PROG_FROM_POD,
                    &e.pod_frame(&n::ipv6(0, 0, 64, POD, bad, n::UDP, &up)),
                );
                check(&out, verdict::SHOT, None, Reason::Nat64BadAddr);
            }
        }
    }
}
