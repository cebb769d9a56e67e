//! Random and malformed packets through both NAT64 programs (a seeded corpus, reproducible):
//! the programs never fail a test run, only return tc verdicts they are allowed to, and count
//! every packet exactly once (a drop is always a counted drop).

use sixlane_testkit::rng::Rng;
use std::net::{Ipv4Addr, Ipv6Addr};

use sixlane_agent::{PinLayout, loader::Datapath, metrics, nat64::Span};
use sixlane_common::layout::{PROG_FROM_POD, PROG_FROM_UPLINK};
use sixlane_testkit::{
    PinDir,
    fixture::{self, SkBuffCtx, verdict},
};
use sixlane_tests::{
    load_datapath,
    nat64::{self as n, Pseudo, V4, XlatNode, flags},
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
