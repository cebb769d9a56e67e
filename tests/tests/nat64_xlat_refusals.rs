//! What the NAT64 translator refuses or leaves alone, each counted: traffic outside the prefix
//! or the pool, sources outside the pod CIDRs (no open relay), what it cannot translate
//! (fragments, extension headers, other transports, zero UDP checksums over IPv6), and the
//! Well-Known Prefix towards non-global IPv4 (RFC 6052 §3.1).

use std::net::{Ipv4Addr, Ipv6Addr};

use sixlane_agent::nat64::Span;
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
};
use sixlane_testkit::{fixture::verdict, packet::checksum};
use sixlane_tests::nat64::{
    self as n, Pseudo, V4,
    xlat::{POD, POOL, SRV, STRANGER, check, default_cfg, env, srv6},
};

#[test]
fn not_ours_passes_and_refusals_are_counted() {
    let mut e = env(&default_cfg());
    let udp6 = |src: Ipv6Addr, dst: Ipv6Addr| {
        n::ipv6(
            0,
            0,
            64,
            src,
            dst,
            n::UDP,
            &n::udp(1, 2, b"x", Pseudo::V6(src, dst), false),
        )
    };
    // Outside the prefix: untouched, counted as passed.
    let other: Ipv6Addr = "fd00:20::1".parse().unwrap();
    let input = e.pod_frame(&udp6(POD, other));
    let out = e.run(PROG_FROM_POD, &input);
    check(&out, verdict::NEXT, Some(&input), Reason::Pass);
    // No open relay: a source outside the pod CIDRs is not translated.
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&udp6(STRANGER, srv6())));
    check(&out, verdict::SHOT, None, Reason::Nat64SrcDenied);
    // Nor does it get ICMP errors reflected to it (an expired hop limit here).
    let expiring = n::ipv6(
        0,
        0,
        1,
        STRANGER,
        srv6(),
        n::UDP,
        &n::udp(1, 2, b"x", Pseudo::V6(STRANGER, srv6()), false),
    );
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&expiring));
    check(&out, verdict::SHOT, None, Reason::Nat64SrcDenied);
    // Non-canonical RFC 6052 address (suffix bits set after a /96 is impossible; use a /64
    // prefix below) and a bad u-octet are refused there. Here: zero UDP checksum over IPv6.
    let mut zero = n::udp(1, 2, b"x", Pseudo::V6(POD, srv6()), true);
    zero[6] = 0;
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &zero)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64UdpChecksum);
    // Fragment header.
    let mut frag = vec![n::UDP, 0, 0, 1, 0, 0, 0, 9];
    frag.extend_from_slice(&n::udp(1, 2, b"x", Pseudo::V6(POD, srv6()), false));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), 44, &frag)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Fragment);
    // Hop-by-hop options header.
    let mut hbh = vec![n::UDP, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&n::udp(1, 2, b"x", Pseudo::V6(POD, srv6()), false));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), 0, &hbh)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64ExtHeader);
    // A transport NAT64 does not translate.
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), 132, &[0u8; 16])),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Proto);

    // IPv4: not to the pool, or outside the NAT64 port range, is the node's business.
    let t = e.udp_session(POD, 40000, 53);
    let to = |dst: Ipv4Addr, dport: u16| {
        n::ipv4(
            &V4::new(SRV, dst),
            n::UDP,
            &n::udp(53, dport, b"x", Pseudo::V4(SRV, dst), false),
        )
    };
    for input in [
        to(Ipv4Addr::new(198, 18, 0, 2), t),
        to(POOL, 22),
        to(POOL, 61200),
    ] {
        let input = e.uplink_frame(&input);
        let out = e.run(PROG_FROM_UPLINK, &input);
        check(&out, verdict::NEXT, Some(&input), Reason::Pass);
    }
    // A later IPv4 fragment has no ports: left to the kernel. A first fragment of a session is
    // dropped (fragments are not translated; see docs/nat64.md).
    let frag4 = |mf: bool, off: u16| {
        n::ipv4(
            &V4 {
                mf,
                off,
                ..V4::new(SRV, POOL)
            },
            n::UDP,
            &n::udp(53, t, b"fragment", Pseudo::V4(SRV, POOL), false),
        )
    };
    let input = e.uplink_frame(&frag4(false, 100));
    check(
        &e.run(PROG_FROM_UPLINK, &input),
        verdict::NEXT,
        Some(&input),
        Reason::Pass,
    );
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&frag4(true, 0)));
    check(&out, verdict::SHOT, None, Reason::Nat64Fragment);
}

/// The Well-Known Prefix must not reach non-global IPv4 (RFC 6052 §3.1): refused with ICMPv6
/// administratively prohibited. A global destination is translated (the packet never leaves
/// this test run).
#[test]
fn well_known_prefix_refuses_non_global_ipv4() {
    let wkp: Ipv6Addr = "64:ff9b::".parse().unwrap();
    let cfg = n::config(
        "64:ff9b::/96",
        &[POOL],
        &["fd00:10::/64"],
        Span::new(61001, 61100),
    );
    let mut e = env(&cfg);
    let me = n::embed96(wkp, POOL);
    for v4 in [
        "198.18.1.10",
        "10.1.2.3",
        "192.168.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "224.0.0.5",
    ] {
        let dst = n::embed96(wkp, v4.parse().unwrap());
        let up = n::udp(40000, 53, b"q", Pseudo::V6(POD, dst), false);
        let orig = n::ipv6(0, 0, 64, POD, dst, n::UDP, &up);
        let out = e.run(PROG_FROM_POD, &e.pod_frame(&orig));
        let want = n::ipv6(
            0,
            0,
            64,
            me,
            POD,
            n::ICMPV6,
            &n::icmp(1, 1, [0; 4], &orig, Pseudo::V6(me, POD)),
        );
        check(
            &out,
            verdict::REDIRECT,
            Some(&e.to_pod(&want)),
            Reason::Nat64DstRefused,
        );
    }
    // A TCP SYN with checksum offload pending (CHECKSUM_PARTIAL: only the pseudo-header sum
    // in the field): the error quotes it with its full checksum, which the pod can verify.
    let dst = n::embed96(wkp, "10.1.2.3".parse().unwrap());
    let syn = n::tcp(
        40001,
        80,
        1,
        0,
        n::flags::SYN,
        &[],
        &[],
        Pseudo::V6(POD, dst),
    );
    let orig = n::ipv6(0, 0, 64, POD, dst, n::TCP, &syn);
    let mut partial = orig.clone();
    let sum = checksum::pseudo_v6(&POD.octets(), &dst.octets(), syn.len() as u32, n::TCP);
    partial[40 + 16..40 + 18].copy_from_slice(&checksum::fold(sum).to_be_bytes());
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&partial));
    let want = n::ipv6(
        0,
        0,
        64,
        me,
        POD,
        n::ICMPV6,
        &n::icmp(1, 1, [0; 4], &orig, Pseudo::V6(me, POD)),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&want)),
        Reason::Nat64DstRefused,
    );
    let global = Ipv4Addr::new(192, 0, 3, 1);
    let dst = n::embed96(wkp, global);
    let up = n::udp(40000, 53, b"q", Pseudo::V6(POD, dst), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, dst, n::UDP, &up)),
    );
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    assert_eq!(&out.pkt[14 + 16..14 + 20], &global.octets());
}
