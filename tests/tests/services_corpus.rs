//! The service datapath on awkward input, through `BPF_PROG_TEST_RUN`: extension-header
//! chains, fragments (later fragments follow their first), truncated and lying headers, a UDP
//! checksum that must not become zero, and a seeded random corpus. Every packet is passed,
//! dropped, answered or redirected, and lands in exactly one counter.

use sixlane_testkit::rng::Rng;
use std::net::Ipv6Addr;

use aya::Ebpf;
use sixlane_agent::{
    PinLayout, metrics,
    model::{DesiredState, NodeState, Protocol},
    services::Programmer,
};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_POD, PROG_TO_UPLINK},
    metrics::{Direction, Reason},
};
use sixlane_testkit::{
    fixture::{self, verdict},
    packet::{self, ETH_HLEN, IPV6_HLEN, TcpFlags, checksum},
};
use sixlane_tests::{
    load_datapath,
    svc::{assert_checksums, backend, counters, port_of, service},
};

const C: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xc);
const B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0xb);
const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 1);
const N: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);

const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DSTOPTS: u8 = 60;

fn setup() -> (
    sixlane_testkit::PinDir,
    PinLayout,
    sixlane_agent::loader::Datapath,
) {
    let (pins, layout, dp) = load_datapath();
    let mut web = service("web", VIP, 80, vec![backend(B, 8080, false)]);
    web.ports.push(port_of(
        "dns",
        Protocol::Udp,
        53,
        vec![backend(B, 5353, false)],
    ));
    web.ports[0].node_port = Some(30080);
    let st = DesiredState {
        node: NodeState {
            name: "n".into(),
            addresses: vec![N],
            cluster_ips_from_outside: false,
        },
        services: [(web.id.clone(), web)].into_iter().collect(),
    };
    Programmer::open(&layout).unwrap().apply(&st).unwrap();
    (pins, layout, dp)
}

fn tcp(s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16, f: TcpFlags, p: &[u8]) -> Vec<u8> {
    packet::tcp(s.into(), sp, d.into(), dp, f, p)
}

/// Inserts 8-byte extension headers of the given types between the IPv6 header and the upper
/// layer (checksums stay valid: none of these changes the pseudo-header).
fn with_ext(pkt: &[u8], exts: &[u8]) -> Vec<u8> {
    let upper = pkt[ETH_HLEN + 6];
    let mut out = pkt[..ETH_HLEN + IPV6_HLEN].to_vec();
    out[ETH_HLEN + 6] = exts[0];
    for (i, _) in exts.iter().enumerate() {
        let next = exts.get(i + 1).copied().unwrap_or(upper);
        out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    out.extend_from_slice(&pkt[ETH_HLEN + IPV6_HLEN..]);
    let plen = (out.len() - ETH_HLEN - IPV6_HLEN) as u16;
    out[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

/// Splits a packet's upper layer into two fragments at `at` bytes (a multiple of 8).
fn fragments(pkt: &[u8], at: usize, id: u32) -> (Vec<u8>, Vec<u8>) {
    let upper = pkt[ETH_HLEN + 6];
    let head = &pkt[..ETH_HLEN + IPV6_HLEN];
    let payload = &pkt[ETH_HLEN + IPV6_HLEN..];
    let frag = |part: &[u8], offset: usize, more: bool| {
        let mut f = head.to_vec();
        f[ETH_HLEN + 6] = FRAGMENT;
        let off_flags = ((offset / 8) << 3) as u16 | u16::from(more);
        f.extend_from_slice(&[upper, 0]);
        f.extend_from_slice(&off_flags.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(part);
        let plen = (f.len() - ETH_HLEN - IPV6_HLEN) as u16;
        f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&plen.to_be_bytes());
        f
    };
    (
        frag(&payload[..at], 0, true),
        frag(&payload[at..], at, false),
    )
}

/// Reassembles two fragments made by [`fragments`] (to check the datagram's checksum).
fn reassemble(first: &[u8], second: &[u8]) -> Vec<u8> {
    let hdr = ETH_HLEN + IPV6_HLEN;
    let mut out = first[..hdr].to_vec();
    out[ETH_HLEN + 6] = first[hdr];
    out.extend_from_slice(&first[hdr + 8..]);
    out.extend_from_slice(&second[hdr + 8..]);
    let plen = (out.len() - hdr) as u16;
    out[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

struct Run {
    verdict: i32,
    output: Vec<u8>,
}

/// Runs `prog` once and checks that exactly one counter moved, under `reason` if given.
fn run(ebpf: &mut Ebpf, layout: &PinLayout, prog: &str, pkt: &[u8], reason: Option<Reason>) -> Run {
    let dir = match prog {
        PROG_FROM_POD | PROG_FROM_UPLINK => Direction::Ingress,
        _ => Direction::Egress,
    };
    let r_or_pass = reason.unwrap_or(Reason::Pass);
    let (t0, r0) = counters(layout, dir, r_or_pass);
    let r = fixture::test_run(ebpf, prog, pkt, None)
        .unwrap_or_else(|e| panic!("{prog} on {}: {e}", packet::describe(pkt)));
    let (t1, r1) = counters(layout, dir, r_or_pass);
    assert_eq!(
        t1 - t0,
        1,
        "{prog}: one counter per packet ({})",
        packet::describe(pkt)
    );
    if reason.is_some() {
        assert_eq!(r1 - r0, 1, "{prog}: counted as {}", r_or_pass.name());
    }
    assert!(
        [verdict::NEXT, verdict::OK, verdict::SHOT, verdict::REDIRECT].contains(&r.verdict),
        "{prog}: verdict {}",
        r.verdict
    );
    Run {
        verdict: r.verdict,
        output: r.output,
    }
}

#[test]
fn extension_headers_fragments_and_lying_headers() {
    let (_pins, layout, mut dp) = setup();
    let l = &layout;
    let e = dp.ebpf_mut();

    // An extension-header chain before TCP: translated, options kept.
    let exts = [HOPOPTS, DSTOPTS, ROUTING];
    let pkt = with_ext(&tcp(C, 40000, VIP, 80, TcpFlags::SYN, b""), &exts);
    let r = run(e, l, PROG_FROM_POD, &pkt, Some(Reason::SvcNew));
    assert_eq!(
        r.output,
        with_ext(&tcp(C, 40000, B, 8080, TcpFlags::SYN, b""), &exts)
    );
    assert_checksums(&r.output);

    // Fragments: the first carries the ports, the later one follows it.
    let dgram = packet::udp(C.into(), 5000, VIP.into(), 53, &[0x42; 100]);
    let (f1, f2) = fragments(&dgram, 56, 0xabcd);
    let want = packet::udp(C.into(), 5000, B.into(), 5353, &[0x42; 100]);
    let (w1, w2) = fragments(&want, 56, 0xabcd);
    let o1 = run(e, l, PROG_FROM_POD, &f1, Some(Reason::SvcNew)).output;
    let o2 = run(e, l, PROG_FROM_POD, &f2, Some(Reason::SvcForward)).output;
    assert_eq!(o1, w1);
    assert_eq!(o2, w2);
    assert_checksums(&reassemble(&o1, &o2));
    // The reply, fragmented too, comes back from the frontend.
    let back = packet::udp(B.into(), 5353, C.into(), 5000, &[0x24; 100]);
    let (b1, b2) = fragments(&back, 56, 0x1234);
    let seen = packet::udp(VIP.into(), 53, C.into(), 5000, &[0x24; 100]);
    let (s1, s2) = fragments(&seen, 56, 0x1234);
    assert_eq!(
        run(e, l, PROG_TO_POD, &b1, Some(Reason::SvcReverse)).output,
        s1
    );
    assert_eq!(
        run(e, l, PROG_TO_POD, &b2, Some(Reason::SvcReverse)).output,
        s2
    );
    // A later fragment to the frontend whose first was never seen cannot be translated.
    let (_, lone) = fragments(&dgram, 56, 0x9999);
    let r = run(e, l, PROG_FROM_POD, &lone, Some(Reason::SvcFragment));
    assert_eq!(r.verdict, verdict::SHOT);
    // ... but one to anybody else is not ours.
    let (_, other) = fragments(&packet::udp(C.into(), 1, B.into(), 2, &[0; 100]), 56, 7);
    let r = run(e, l, PROG_FROM_POD, &other, Some(Reason::Pass));
    assert_eq!(r.output, other);

    // A TCP header cut to 3 bytes: counted malformed, passed untouched.
    let mut short = tcp(C, 40001, VIP, 80, TcpFlags::SYN, b"");
    short.truncate(ETH_HLEN + IPV6_HLEN + 3);
    short[ETH_HLEN + 5] = 3;
    let r = run(e, l, PROG_FROM_POD, &short, Some(Reason::Malformed));
    assert_eq!((r.verdict, &r.output), (verdict::NEXT, &short));
    // A payload length beyond the frame.
    let mut long = tcp(C, 40002, VIP, 80, TcpFlags::SYN, b"");
    long[ETH_HLEN + 4] = 0x40;
    let r = run(e, l, PROG_FROM_POD, &long, Some(Reason::Malformed));
    assert_eq!(r.output, long);
    // A chain longer than the parser walks.
    let deep = with_ext(&tcp(C, 40003, VIP, 80, TcpFlags::SYN, b""), &[DSTOPTS; 7]);
    let r = run(e, l, PROG_FROM_POD, &deep, Some(Reason::Unsupported));
    assert_eq!(r.output, deep);
    // An ICMPv6 header cut to 2 bytes.
    let mut icmp = packet::icmp6_echo(C, VIP, 1, 1, b"");
    icmp.truncate(ETH_HLEN + IPV6_HLEN + 2);
    icmp[ETH_HLEN + 5] = 2;
    run(e, l, PROG_FROM_POD, &icmp, Some(Reason::Malformed));
}

/// A datagram whose translated UDP checksum computes to zero leaves with 0xffff (RFC 8200
/// §8.1: zero is not a valid IPv6 UDP checksum).
#[test]
fn udp_checksum_never_becomes_zero() {
    let (_pins, layout, mut dp) = setup();
    // Choose two payload bytes so the translated datagram's one's complement sum is 0xffff.
    let translated = packet::udp(C.into(), 5000, B.into(), 5353, &[0, 0]);
    let udp = &translated[ETH_HLEN + IPV6_HLEN..];
    let mut z = udp.to_vec();
    z[6] = 0;
    z[7] = 0;
    let pseudo = checksum::pseudo_v6(&C.octets(), &B.octets(), udp.len() as u32, 17);
    let s = checksum::fold(checksum::sum(&z, pseudo));
    let fill = (!s).to_be_bytes();
    let input = packet::udp(C.into(), 5000, VIP.into(), 53, &fill);
    let r = run(
        dp.ebpf_mut(),
        &layout,
        PROG_FROM_POD,
        &input,
        Some(Reason::SvcNew),
    );
    let csum = &r.output[ETH_HLEN + IPV6_HLEN + 6..ETH_HLEN + IPV6_HLEN + 8];
    assert_eq!(csum, [0xff, 0xff], "{}", packet::describe(&r.output));
    assert_checksums(&r.output);
}

fn corpus_packet(rng: &mut Rng) -> Vec<u8> {
    let addrs = [C, B, VIP, N, "fd00:99::1".parse().unwrap()];
    let (s, d) = (rng.pick(&addrs), rng.pick(&addrs));
    let ports = [80u16, 53, 8080, 5353, 30080, 40000, 61000];
    // Client ports from a small set so later packets hit the flows earlier ones created.
    let cp = 40000 + rng.below(4) as u16;
    let flags = rng.pick(&[
        TcpFlags::SYN,
        TcpFlags::SYN_ACK,
        TcpFlags::ACK,
        TcpFlags::FIN_ACK,
        TcpFlags::RST,
        TcpFlags::PSH_ACK,
    ]);
    match rng.below(5) {
        // The service's own traffic (requests, replies, errors about it), maybe mutated.
        0..=2 => {
            let mut p = match rng.below(8) {
                0 => tcp(C, cp, VIP, 80, flags, b"abc"),
                1 => tcp(B, 8080, C, cp, flags, b"defg"),
                2 => packet::udp(C.into(), cp, VIP.into(), 53, b"q"),
                3 => packet::udp(B.into(), 5353, C.into(), cp, b"answer"),
                4 => tcp(d, cp, N, 30080, flags, b""),
                5 => packet::icmp6_echo(s, VIP, 1, 2, b"ping"),
                6 => sixlane_tests::svc::icmp6(
                    s,
                    C,
                    rng.pick(&[1u8, 2, 3, 4]),
                    0,
                    [0, 0, 5, 0],
                    &tcp(C, cp, B, 8080, TcpFlags::ACK, b"quoted")[ETH_HLEN..],
                ),
                _ => tcp(s, rng.pick(&ports), d, rng.pick(&ports), flags, b"xyz"),
            };
            if rng.below(3) == 0 {
                p = with_ext(&p, &[rng.pick(&[HOPOPTS, DSTOPTS, ROUTING, FRAGMENT])]);
            }
            if rng.below(2) == 0 {
                for _ in 0..=rng.below(3) {
                    let i = ETH_HLEN + 4 + rng.below(p.len() - ETH_HLEN - 4);
                    p[i] = rng.next_u64() as u8;
                }
            }
            // Keep the IPv6 header whole (test_run refuses anything shorter) and the version.
            p[ETH_HLEN] = 0x60 | (p[ETH_HLEN] & 0x0f);
            if rng.below(4) == 0 {
                let room = p.len() - ETH_HLEN - IPV6_HLEN + 1;
                p.truncate(ETH_HLEN + IPV6_HLEN + rng.below(room));
            }
            p
        }
        // A valid IPv6 header with a random next header and random bytes after it.
        _ => {
            let mut p = tcp(s, 1, d, 2, TcpFlags::ACK, b"");
            p.truncate(ETH_HLEN + IPV6_HLEN);
            let any = rng.next_u64() as u8;
            p[ETH_HLEN + 6] = rng.pick(&[6u8, 17, 58, 0, 43, 44, 60, 51, 132, any]);
            let n = rng.below(160);
            for _ in 0..n {
                p.push(rng.next_u64() as u8);
            }
            let plen = if rng.below(4) == 0 {
                rng.next_u64() as u16
            } else {
                n as u16
            };
            p[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&plen.to_be_bytes());
            p
        }
    }
}

#[test]
fn random_corpus_is_always_counted_never_fatal() {
    let (_pins, layout, mut dp) = setup();
    let mut rng = Rng::new(0x5eed_1a9e_0000_0001);
    let progs = [PROG_FROM_POD, PROG_TO_POD, PROG_FROM_UPLINK, PROG_TO_UPLINK];
    let mut verdicts = std::collections::BTreeMap::new();
    for i in 0..2000 {
        let pkt = corpus_packet(&mut rng);
        let prog = progs[i % progs.len()];
        let r = run(dp.ebpf_mut(), &layout, prog, &pkt, None);
        *verdicts.entry(r.verdict).or_insert(0) += 1;
    }
    // The corpus exercised more than the pass path.
    let rows = metrics::read(&layout).unwrap();
    let used: Vec<&str> = rows
        .iter()
        .filter(|r| r.packets > 0)
        .map(|r| r.reason)
        .collect();
    eprintln!("verdicts {verdicts:?}; reasons {used:?}");
    for want in [
        "pass",
        "malformed",
        "svc_new",
        "svc_forward",
        "svc_reverse",
        "svc_icmp_error",
        "svc_echo_reply",
    ] {
        assert!(used.contains(&want), "no {want} in {used:?}");
    }
    assert!(verdicts.len() > 1, "{verdicts:?}");
}
