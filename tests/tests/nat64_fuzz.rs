//! Random and malformed packets through both NAT64 programs (a seeded corpus, reproducible):
//! the programs never fail a test run, only return tc verdicts they are allowed to, and count
//! every packet exactly once (a drop is always a counted drop).

use sixlane_testkit::rng::Rng;
use std::net::{Ipv4Addr, Ipv6Addr};

use sixlane_agent::{PinLayout, loader::Datapath, metrics, nat64::Span};
use sixlane_common::layout::{PROG_FROM_POD, PROG_FROM_UPLINK};
use sixlane_common::metrics::Reason;
use sixlane_testkit::packet::checksum;
use sixlane_testkit::{
    PinDir,
    fixture::{self, SkBuffCtx, verdict},
};
use sixlane_tests::{
    load_datapath,
    nat64::{self as n, Pseudo, V4, XlatNode, flags, xlat},
};

const PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6464, 0, 0, 0, 0, 0, 0);
const POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xa);
const POOL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SRV: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);

struct Env {
    node: XlatNode,
    layout: PinLayout,
    dp: Datapath,
    _pins: PinDir,
}

impl Env {
    fn total(&self) -> u64 {
        metrics::read(&self.layout)
            .unwrap()
            .iter()
            .map(|r| r.packets)
            .sum()
    }

    /// Runs a frame; `None` when the kernel refuses it as test input (a truncated IPv6
    /// header, for instance), which never reaches the program.
    fn run(&mut self, prog: &str, frame: &[u8]) -> Option<i32> {
        let mut ctx = SkBuffCtx::default();
        ctx.ifindex = if prog == PROG_FROM_POD {
            self.node.pod_if
        } else {
            self.node.uplink_if
        };
        let dp = &mut self.dp;
        self.node
            .ns
            .enter(|| fixture::test_run(dp.ebpf_mut(), prog, frame, Some(&ctx)))
            .ok()
            .map(|r| r.verdict)
    }
}

/// Valid packets of every kind the translator handles, both directions.
fn seeds(e: &Env) -> Vec<(&'static str, Vec<u8>)> {
    let s6 = n::embed96(PREFIX, SRV);
    let from_pod = |l3: Vec<u8>| n::eth(e.node.pod_host_mac, e.node.pod_mac, n::ETH_P_IPV6, &l3);
    let from_up = |l3: Vec<u8>| n::eth(e.node.uplink_mac, e.node.gw_mac, n::ETH_P_IP, &l3);
    let v6 = |next: u8, p: Vec<u8>| n::ipv6(0, 0, 64, POD, s6, next, &p);
    let v4 = |proto: u8, p: Vec<u8>| n::ipv4(&V4::new(SRV, POOL), proto, &p);
    let delivered = n::ipv6(
        0,
        0,
        9,
        s6,
        POD,
        n::UDP,
        &n::udp(53, 40000, b"dns", Pseudo::V6(s6, POD), false),
    );
    let p6 = n::embed96(PREFIX, POOL);
    let hairpinned = n::ipv6(
        0,
        0,
        63,
        p6,
        POD,
        n::UDP,
        &n::udp(61005, 40003, b"hairpin", Pseudo::V6(p6, POD), false),
    );
    let sent = n::ipv4(
        &V4::new(POOL, SRV),
        n::UDP,
        &n::udp(61001, 53, b"dns", Pseudo::V4(POOL, SRV), false),
    );
    vec![
        (
            PROG_FROM_POD,
            from_pod(v6(
                n::UDP,
                n::udp(40000, 53, b"query", Pseudo::V6(POD, s6), false),
            )),
        ),
        (
            PROG_FROM_POD,
            from_pod(v6(
                n::TCP,
                n::tcp(
                    40001,
                    80,
                    1,
                    0,
                    flags::SYN,
                    &n::mss_option(1440),
                    &[],
                    Pseudo::V6(POD, s6),
                ),
            )),
        ),
        (
            PROG_FROM_POD,
            from_pod(v6(
                n::ICMPV6,
                n::icmp(128, 0, n::echo_rest(5, 1), b"ping", Pseudo::V6(POD, s6)),
            )),
        ),
        (
            PROG_FROM_POD,
            from_pod(v6(
                n::ICMPV6,
                n::icmp(1, 4, [0; 4], &delivered, Pseudo::V6(POD, s6)),
            )),
        ),
        (
            PROG_FROM_POD,
            from_pod(v6(
                n::ICMPV6,
                n::icmp(2, 0, 1400u32.to_be_bytes(), &delivered, Pseudo::V6(POD, s6)),
            )),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(
                n::UDP,
                n::udp(53, 61001, b"answer", Pseudo::V4(SRV, POOL), false),
            )),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(
                n::UDP,
                n::udp(53, 61001, b"zero", Pseudo::V4(SRV, POOL), true),
            )),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(
                n::TCP,
                n::tcp(
                    80,
                    61002,
                    9,
                    2,
                    flags::SYN | flags::ACK,
                    &n::mss_option(1460),
                    &[],
                    Pseudo::V4(SRV, POOL),
                ),
            )),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(
                n::ICMP,
                n::icmp(0, 0, n::echo_rest(61003, 1), b"pong", Pseudo::None),
            )),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(
                n::ICMP,
                n::icmp(3, 4, [0, 0, 5, 0x78], &sent, Pseudo::None),
            )),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(n::ICMP, n::icmp(11, 0, [0; 4], &sent, Pseudo::None))),
        ),
        (
            PROG_FROM_UPLINK,
            from_up(v4(
                n::ICMP,
                n::icmp(12, 0, [9, 0, 0, 0], &sent, Pseudo::None),
            )),
        ),
        // Hairpinning: to the pool address through the prefix, and an error quoting a packet
        // hairpinned from it.
        (
            PROG_FROM_POD,
            from_pod(n::ipv6(
                0,
                0,
                64,
                POD,
                p6,
                n::UDP,
                &n::udp(40002, 61004, b"hairpin", Pseudo::V6(POD, p6), false),
            )),
        ),
        (
            PROG_FROM_POD,
            from_pod(n::ipv6(
                0,
                0,
                64,
                POD,
                p6,
                n::ICMPV6,
                &n::icmp(128, 0, n::echo_rest(6, 1), b"ping", Pseudo::V6(POD, p6)),
            )),
        ),
        (
            PROG_FROM_POD,
            from_pod(n::ipv6(
                0,
                0,
                64,
                POD,
                p6,
                n::ICMPV6,
                &n::icmp(1, 4, [0; 4], &hairpinned, Pseudo::V6(POD, p6)),
            )),
        ),
    ]
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut p = seed.to_vec();
    match rng.below(6) {
        // Flip a few bytes anywhere after the Ethernet header.
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = 14 + rng.below(p.len() - 14);
                p[i] = rng.byte();
            }
        }
        // Truncate.
        1 => p.truncate(14 + rng.below(p.len() - 14)),
        // Lie about lengths (IPv4 total length / IPv6 payload length / inner lengths).
        2 => {
            let at = [16usize, 17, 18, 19, 14 + 28 + 2, 14 + 48 + 4, 14 + 48 + 5];
            let i = at[rng.below(at.len())].min(p.len() - 1);
            p[i] = rng.byte();
        }
        // Extend with garbage.
        3 => p.extend((0..rng.below(200)).map(|_| rng.byte())),
        // Random protocol / next header / type / code.
        4 => {
            let at = [20usize, 23, 34, 35, 54, 55];
            let i = at[rng.below(at.len())].min(p.len() - 1);
            p[i] = rng.byte();
        }
        // Entirely random payload behind a real Ethernet header.
        _ => {
            let n = 15 + rng.below(300);
            p.truncate(14);
            while p.len() < n {
                p.push(rng.byte());
            }
            if rng.below(2) == 0 {
                p[14] = 0x60 | (p[14] & 0x0f);
            } else {
                p[14] = 0x45;
            }
        }
    }
    p
}

#[test]
fn random_and_malformed_packets_are_counted_never_fatal() {
    let (pins, layout, dp) = load_datapath();
    n::apply(
        &layout,
        &n::config(
            "fd00:6464::/96",
            &[POOL],
            &["fd00:10::/64"],
            Span::new(61001, 61010),
        ),
    );
    let mut e = Env {
        node: XlatNode::new(POOL, &[POD]),
        layout,
        dp,
        _pins: pins,
    };
    let seeds = seeds(&e);
    // Open the sessions the IPv4 seeds belong to (the first pod seeds do that).
    for (prog, s) in seeds.iter().take(3) {
        assert_eq!(
            e.run(prog, s),
            Some(verdict::REDIRECT),
            "seed through {prog}"
        );
    }
    let mut rng = Rng::new(0x5eed_6464_0000_0001);
    let allowed = [verdict::NEXT, verdict::SHOT, verdict::REDIRECT];
    let (mut ran, mut refused) = (0u64, 0u64);
    let before = e.total();
    for i in 0..6000 {
        let (prog, seed) = &seeds[rng.below(seeds.len())];
        let frame = mutate(&mut rng, seed);
        // Every frame through both programs: the wrong direction is a mutation too.
        for p in [
            *prog,
            if *prog == PROG_FROM_POD {
                PROG_FROM_UPLINK
            } else {
                PROG_FROM_POD
            },
        ] {
            match e.run(p, &frame) {
                Some(v) => {
                    assert!(
                        allowed.contains(&v),
                        "case {i} through {p}: verdict {v} for {frame:02x?}"
                    );
                    ran += 1;
                }
                None => refused += 1,
            }
        }
    }
    let counted = e.total() - before;
    assert!(
        ran > 10_000,
        "only {ran} frames ran ({refused} refused by test_run)"
    );
    assert_eq!(
        counted, ran,
        "every packet counted exactly once ({refused} refused as input)"
    );
    // And the translator still works afterwards.
    for (prog, s) in seeds.iter().take(3) {
        assert_eq!(e.run(prog, s), Some(verdict::REDIRECT));
    }
}

/// An IPv4 packet with its header fields patched after the fact (`patch` gets the header),
/// header checksum recomputed unless `bad_csum`.
fn v4_patched(
    h: &V4,
    proto: u8,
    payload: &[u8],
    bad_csum: bool,
    patch: impl Fn(&mut [u8]),
) -> Vec<u8> {
    let mut p = n::ipv4(h, proto, payload);
    let ihl = usize::from(p[0] & 0x0f) * 4;
    patch(&mut p[..ihl]);
    p[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::compute(&p[..ihl], 0) ^ u16::from(bad_csum);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// Sets a 16-bit big-endian field.
fn set16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The corpus's self-contradicting shapes, each with its exact verdict and counter: headers
/// that disagree with themselves are dropped as `nat64_malformed` in both directions and inside
/// ICMP errors; lengths past the frame fail the parser (passed to the kernel, which discards
/// them, as `malformed`); Ethernet padding behind a shorter IP packet still translates.
#[test]
fn headers_that_disagree_with_themselves_are_dropped_as_malformed() {
    use xlat::{POD, POOL, SRV, check, default_cfg, env, srv6};
    let mut e = env(&default_cfg());
    let malformed = |e: &mut xlat::Env, prog: &str, frame: &[u8], what: &str| {
        let out = e.run(prog, frame);
        assert_eq!(out.verdict, verdict::SHOT, "{what}: {:?}", out.counted);
        check(&out, verdict::SHOT, None, Reason::Nat64Malformed);
    };
    let pod6 = |e: &xlat::Env, next: u8, seg: &[u8]| {
        e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), next, seg))
    };
    let syn = n::tcp(
        41000,
        80,
        1,
        0,
        flags::SYN,
        &[],
        &[],
        Pseudo::V6(POD, srv6()),
    );

    // IPv6 → IPv4.
    let mut seg = syn.clone();
    seg[12] = 4 << 4;
    let f = pod6(&e, n::TCP, &seg);
    malformed(&mut e, PROG_FROM_POD, &f, "TCP data offset 4");
    let mut seg = syn.clone();
    seg[12] = 6 << 4;
    let f = pod6(&e, n::TCP, &seg);
    malformed(
        &mut e,
        PROG_FROM_POD,
        &f,
        "TCP data offset past the segment",
    );
    let dgram = n::udp(40000, 53, b"query", Pseudo::V6(POD, srv6()), false);
    let mut u = dgram.clone();
    set16(&mut u, 4, 7);
    let f = pod6(&e, n::UDP, &u);
    malformed(&mut e, PROG_FROM_POD, &f, "UDP length 7");
    let mut u = dgram.clone();
    set16(&mut u, 4, 14);
    let f = pod6(&e, n::UDP, &u);
    malformed(&mut e, PROG_FROM_POD, &f, "UDP length past the payload");
    // A payload length shorter than the TCP header, the rest of the segment behind it.
    let mut f = pod6(&e, n::TCP, &syn);
    set16(&mut f, 14 + 4, 12);
    malformed(
        &mut e,
        PROG_FROM_POD,
        &f,
        "IPv6 payload length inside the TCP header",
    );
    // Longer than the frame: the parser's (the kernel drops it).
    let mut f = pod6(&e, n::UDP, &dgram);
    set16(&mut f, 14 + 4, 200);
    let out = e.run(PROG_FROM_POD, &f);
    check(&out, verdict::NEXT, None, Reason::Malformed);
    assert_eq!(out.pkt, f, "untouched");

    // Ethernet padding behind a complete packet translates; the padding is left behind it.
    let mut f = pod6(&e, n::UDP, &dgram);
    f.extend_from_slice(&[0; 10]);
    let out = e.run(PROG_FROM_POD, &f);
    let t = xlat::v4_sport(&out.pkt);
    let h = V4 {
        id: xlat::v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    let mut want = e.to_uplink(&n::ipv4(
        &h,
        n::UDP,
        &n::udp(t, 53, b"query", Pseudo::V4(POOL, SRV), false),
    ));
    want.extend_from_slice(&[0; 10]);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);

    // IPv4 → IPv6, on that session.
    let reply = n::udp(53, t, b"answer", Pseudo::V4(SRV, POOL), false);
    let v4 = V4::new(SRV, POOL);
    let f = e.uplink_frame(&v4_patched(&v4, n::UDP, &reply, true, |_| {}));
    malformed(&mut e, PROG_FROM_UPLINK, &f, "IPv4 header checksum");
    let f = e.uplink_frame(&v4_patched(&v4, n::UDP, &reply, false, |h| {
        set16(h, 2, 20 + 7);
    }));
    malformed(
        &mut e,
        PROG_FROM_UPLINK,
        &f,
        "IPv4 total length inside the UDP datagram",
    );
    let f = e.uplink_frame(&v4_patched(&v4, n::UDP, &reply, false, |h| {
        set16(h, 2, 200);
    }));
    let out = e.run(PROG_FROM_UPLINK, &f);
    check(&out, verdict::NEXT, None, Reason::Malformed);
    assert_eq!(out.pkt, f, "untouched");
    let mut u = reply.clone();
    set16(&mut u, 4, 6);
    let f = e.uplink_frame(&n::ipv4(&v4, n::UDP, &u));
    malformed(&mut e, PROG_FROM_UPLINK, &f, "UDP length 6");
    let mut u = reply.clone();
    set16(&mut u, 4, 15);
    let f = e.uplink_frame(&n::ipv4(&v4, n::UDP, &u));
    malformed(&mut e, PROG_FROM_UPLINK, &f, "UDP length past the payload");
    // Padding behind the reply: translated, the padding left behind.
    let mut f = e.uplink_frame(&n::ipv4(&v4, n::UDP, &reply));
    f.extend_from_slice(&[0; 6]);
    let out = e.run(PROG_FROM_UPLINK, &f);
    let d = n::udp(53, 40000, b"answer", Pseudo::V6(srv6(), POD), false);
    let mut want = e.to_pod(&n::ipv6(0, 0, 63, srv6(), POD, n::UDP, &d));
    want.extend_from_slice(&[0; 6]);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InPeer);
    // TCP: a session first, then a SYN-ACK whose data offset is 4.
    let out = e.run(PROG_FROM_POD, &pod6(&e, n::TCP, &syn));
    check(&out, verdict::REDIRECT, None, Reason::Nat64Out);
    let tt = xlat::v4_sport(&out.pkt);
    let mut seg = n::tcp(
        80,
        tt,
        5,
        2,
        flags::SYN | flags::ACK,
        &[],
        &[],
        Pseudo::V4(SRV, POOL),
    );
    seg[12] = 4 << 4;
    let f = e.uplink_frame(&n::ipv4(&v4, n::TCP, &seg));
    malformed(&mut e, PROG_FROM_UPLINK, &f, "TCP data offset 4 from IPv4");

    // ICMPv4 errors: the outer header, the quoted header, the quoted UDP length.
    let sent = |udp_len: Option<u16>| {
        let mut u = n::udp(t, 53, b"query", Pseudo::V4(POOL, SRV), false);
        if let Some(l) = udp_len {
            set16(&mut u, 4, l);
        }
        u
    };
    let quote = n::ipv4(&V4::new(POOL, SRV), n::UDP, &sent(None));
    let err = |q: &[u8]| n::icmp(3, 3, [0; 4], q, Pseudo::None);
    let f = e.uplink_frame(&v4_patched(&v4, n::ICMP, &err(&quote), true, |_| {}));
    malformed(
        &mut e,
        PROG_FROM_UPLINK,
        &f,
        "ICMPv4 error's header checksum",
    );
    let bad_quote = v4_patched(&V4::new(POOL, SRV), n::UDP, &sent(None), true, |_| {});
    let f = e.uplink_frame(&n::ipv4(&v4, n::ICMP, &err(&bad_quote)));
    malformed(&mut e, PROG_FROM_UPLINK, &f, "quoted IPv4 header checksum");
    let short = n::ipv4(&V4::new(POOL, SRV), n::UDP, &sent(Some(7)));
    let f = e.uplink_frame(&n::ipv4(&v4, n::ICMP, &err(&short)));
    malformed(&mut e, PROG_FROM_UPLINK, &f, "quoted UDP length 7");
    // The sound error is still translated.
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&v4, n::ICMP, &err(&quote))),
    );
    check(&out, verdict::REDIRECT, None, Reason::Nat64IcmpErrIn);

    // ICMPv6 errors from the pod quoting what it received: TCP data offset 4, UDP length 7.
    let s6 = srv6();
    let mut q = n::tcp(
        80,
        41000,
        5,
        2,
        flags::SYN | flags::ACK,
        &[],
        &[],
        Pseudo::V6(s6, POD),
    );
    q[12] = 4 << 4;
    let quoted = n::ipv6(0, 0, 63, s6, POD, n::TCP, &q);
    let m = n::icmp(1, 4, [0; 4], &quoted, Pseudo::V6(POD, s6));
    let f = pod6(&e, n::ICMPV6, &m);
    malformed(&mut e, PROG_FROM_POD, &f, "quoted TCP data offset 4");
    let mut q = n::udp(53, 40000, b"answer", Pseudo::V6(s6, POD), false);
    set16(&mut q, 4, 7);
    let quoted = n::ipv6(0, 0, 63, s6, POD, n::UDP, &q);
    let m = n::icmp(1, 4, [0; 4], &quoted, Pseudo::V6(POD, s6));
    let f = pod6(&e, n::ICMPV6, &m);
    malformed(&mut e, PROG_FROM_POD, &f, "quoted UDP length 7");
    q[4..6].copy_from_slice(&(8u16 + 6).to_be_bytes());
    n::fill_csum(&mut q, 6, Pseudo::V6(s6, POD), n::UDP);
    let quoted = n::ipv6(0, 0, 63, s6, POD, n::UDP, &q);
    let m = n::icmp(1, 4, [0; 4], &quoted, Pseudo::V6(POD, s6));
    let out = e.run(PROG_FROM_POD, &pod6(&e, n::ICMPV6, &m));
    check(&out, verdict::REDIRECT, None, Reason::Nat64IcmpErrOut);
}
