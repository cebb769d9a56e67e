//! The translator's header options (Jool's `zeroize-traffic-class`, `override-tos`,
//! `source-icmpv6-errors-better`, and the IPv4 Identification of atomic datagrams) through
//! `BPF_PROG_TEST_RUN`: each changes exactly the field it names on the packets the translator
//! sends, and the quoted headers inside ICMP errors keep RFC 7915's copy rule. The defaults are
//! held by the other `nat64_xlat_*` tests.

use sixlane_agent::nat64::{ErrorSource, Identification, Nat64Config};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
};
use sixlane_testkit::{fixture::verdict, packet};
use sixlane_tests::nat64::{
    self as n, Pseudo, V4,
    xlat::{POD, POOL, ROUTER, SRV, check, default_cfg, env, srv6, v4_id, v4_sport},
};

fn options() -> Nat64Config {
    Nat64Config {
        zero_traffic_class: true,
        override_tos: Some(0x20),
        icmpv6_error_source: ErrorSource::Destination,
        ipv4_identification: Identification::ZeroWithDf,
        ..default_cfg()
    }
}

#[test]
fn tos_traffic_class_and_identification_follow_the_options() {
    let mut e = env(&options());
    // Out: TOS from the option, not the traffic class; a small packet keeps a generated ID.
    let up = n::udp(40000, 53, b"query", Pseudo::V6(POD, srv6()), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0xb8, 0, 64, POD, srv6(), n::UDP, &up)),
    );
    let t = v4_sport(&out.pkt);
    let h = V4 {
        tos: 0x20,
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let want = e.to_uplink(&n::ipv4(
        &h,
        n::UDP,
        &n::udp(t, 53, b"query", Pseudo::V4(POOL, SRV), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);

    // An atomic datagram (DF set above 1260 bytes): Identification 0.
    let big = vec![7u8; 1300];
    let up = n::udp(40000, 53, &big, Pseudo::V6(POD, srv6()), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0xb8, 0, 64, POD, srv6(), n::UDP, &up)),
    );
    let h = V4 {
        tos: 0x20,
        id: 0,
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

    // In: traffic class 0 whatever the TOS.
    let h = V4 {
        tos: 0x28,
        ttl: 50,
        ..V4::new(SRV, POOL)
    };
    let down = n::udp(53, t, b"answer", Pseudo::V4(SRV, POOL), false);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&h, n::UDP, &down)),
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        49,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"answer", Pseudo::V6(srv6(), POD), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InPeer);
}

#[test]
fn translated_errors_come_from_the_quoted_destination_when_configured() {
    let mut e = env(&options());
    let t = e.udp_session(POD, 40000, 53);
    // A router on the IPv4 side says the host is unreachable (ICMPv6 "no route", RFC 7915
    // §4.2), quoting what the translator sent.
    let quoted = n::ipv4(
        &V4 {
            tos: 0x10,
            id: 0x4321,
            ttl: 17,
            ..V4::new(POOL, SRV)
        },
        n::UDP,
        &n::udp(t, 53, b"quoted query", Pseudo::V4(POOL, SRV), false),
    );
    let h = V4 {
        tos: 0xa0,
        ttl: 30,
        ..V4::new(ROUTER, POOL)
    };
    let err = n::ipv4(&h, n::ICMP, &n::icmp(3, 1, [0; 4], &quoted, Pseudo::None));
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&err));
    // From SRV' (not the router's address), traffic class 0 outside, the quote's copied.
    let inner = n::ipv6(
        0x10,
        0,
        17,
        POD,
        srv6(),
        n::UDP,
        &n::udp(40000, 53, b"quoted query", Pseudo::V6(POD, srv6()), false),
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        29,
        srv6(),
        POD,
        n::ICMPV6,
        &n::icmp(1, 0, [0; 4], &inner, Pseudo::V6(srv6(), POD)),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64IcmpErrIn);

    // The pod's error about a packet it got: TOS from the option outside, the quote's copied;
    // DF clear below 1260 bytes, so the generated Identification stays.
    let delivered = n::ipv6(
        0x30,
        0,
        40,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, 40000, b"answer!", Pseudo::V6(srv6(), POD), false),
    );
    let err6 = n::icmp(1, 4, [0; 4], &delivered, Pseudo::V6(POD, srv6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0x48, 0, 64, POD, srv6(), n::ICMPV6, &err6)),
    );
    let inner4 = n::ipv4(
        &V4 {
            tos: 0x30,
            ttl: 40,
            ..V4::new(SRV, POOL)
        },
        n::UDP,
        &n::udp(53, t, b"answer!", Pseudo::V4(SRV, POOL), false),
    );
    let h = V4 {
        tos: 0x20,
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
    packet::verify_checksums(&out.pkt).unwrap();
}
