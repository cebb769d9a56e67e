//! NAT64 translation through `BPF_PROG_TEST_RUN`: packets in, packets out, compared field by
//! field with packets built independently from RFC 7915/6052/6146 (`sixlane_tests::nat64`), and
//! every output's checksums verified by the testkit's own RFC 1071 code.
//!
//! Test runs happen inside a namespace whose routes and static neighbours make the datapath's
//! FIB lookups resolve (`XlatNode`); nothing is ever transmitted.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use sixlane_agent::{
    PinLayout,
    loader::Datapath,
    metrics,
    nat64::{Nat64Config, Span, state},
};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::{Direction, Reason},
    nat64::maps::DIR_OUT,
};
use sixlane_testkit::{
    PinDir,
    fixture::{self, SkBuffCtx, verdict},
    packet,
};
use sixlane_tests::{
    load_datapath,
    nat64::{self as n, Pseudo, V4, XlatNode, flags},
};

const PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6464, 0, 0, 0, 0, 0, 0);
const POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xa);
const POD2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xb);
const STRANGER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
const POOL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SRV: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

fn srv6() -> Ipv6Addr {
    n::embed96(PREFIX, SRV)
}

struct Env {
    node: XlatNode,
    layout: PinLayout,
    dp: Datapath,
    _pins: PinDir,
}

fn env(cfg: &Nat64Config) -> Env {
    let (pins, layout, dp) = load_datapath();
    n::apply(&layout, cfg);
    let node = XlatNode::new(POOL, &[POD, POD2]);
    Env {
        node,
        layout,
        dp,
        _pins: pins,
    }
}

fn default_cfg() -> Nat64Config {
    n::config(
        "fd00:6464::/96",
        &[POOL],
        &["fd00:10::/64"],
        Span::new(61001, 61100),
    )
}

/// A port (or echo identifier) of `default_cfg`'s range that none of `taken` uses: bindings
/// land anywhere in the range (keyed hash), so "no session here" needs a port known to be free.
fn free_port(taken: &[u16]) -> u16 {
    (61001..=61100)
        .rev()
        .find(|p| !taken.contains(p))
        .expect("a free port")
}

/// One packet through a program, in the node's namespace.
struct Out {
    verdict: i32,
    pkt: Vec<u8>,
    /// Counter deltas by reason name.
    counted: BTreeMap<&'static str, u64>,
}

impl Env {
    fn counters(&self) -> BTreeMap<&'static str, u64> {
        metrics::read(&self.layout)
            .unwrap()
            .into_iter()
            .filter(|r| r.direction == Direction::Ingress.name())
            .map(|r| (r.reason, r.packets))
            .collect()
    }

    fn run(&mut self, prog: &str, input: &[u8]) -> Out {
        let ifindex = if prog == PROG_FROM_POD {
            self.node.pod_if
        } else {
            self.node.uplink_if
        };
        let before = self.counters();
        let mut ctx = SkBuffCtx::default();
        ctx.ifindex = ifindex;
        let dp = &mut self.dp;
        let r = self
            .node
            .ns
            .enter(|| fixture::test_run(dp.ebpf_mut(), prog, input, Some(&ctx)))
            .unwrap_or_else(|e| panic!("test run: {e}"));
        let after = self.counters();
        let counted = after
            .iter()
            .filter_map(|(k, v)| {
                let d = v - before.get(k).copied().unwrap_or(0);
                (d > 0).then_some((*k, d))
            })
            .collect();
        Out {
            verdict: r.verdict,
            pkt: r.output,
            counted,
        }
    }

    /// Like [`Env::run`] without reading counters (for the exhaustive loops).
    fn run_fast(&mut self, prog: &str, input: &[u8]) -> (i32, Vec<u8>) {
        let ifindex = if prog == PROG_FROM_POD {
            self.node.pod_if
        } else {
            self.node.uplink_if
        };
        let mut ctx = SkBuffCtx::default();
        ctx.ifindex = ifindex;
        let dp = &mut self.dp;
        let r = self
            .node
            .ns
            .enter(|| fixture::test_run(dp.ebpf_mut(), prog, input, Some(&ctx)))
            .unwrap_or_else(|e| panic!("test run: {e}"));
        (r.verdict, r.output)
    }

    /// Opens a UDP session POD:`x` → SRV:`port` and returns its pool port.
    fn udp_session(&mut self, pod: Ipv6Addr, x: u16, port: u16) -> u16 {
        let up = n::udp(x, port, b"open", Pseudo::V6(pod, srv6()), false);
        let out = self.run(
            PROG_FROM_POD,
            &self.pod_frame(&n::ipv6(0, 0, 64, pod, srv6(), n::UDP, &up)),
        );
        assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
        v4_sport(&out.pkt)
    }

    /// The TCP state of session POD:`x` → SRV:`port` (from the pinned map).
    fn tcp_state(&self, x: u16, port: u16) -> Option<u8> {
        state::sessions(&self.layout)
            .unwrap()
            .into_iter()
            .find(|(k, _)| {
                k.dir == DIR_OUT && k.proto == n::TCP && k.port == x && k.remote_port == port
            })
            .map(|(_, v)| v.state)
    }

    /// A frame from the pod to the node.
    fn pod_frame(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.pod_host_mac, self.node.pod_mac, n::ETH_P_IPV6, l3)
    }

    /// A frame from the IPv4 gateway to the node.
    fn uplink_frame(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.uplink_mac, self.node.gw_mac, n::ETH_P_IP, l3)
    }

    /// What the node sends towards the IPv4 gateway.
    fn to_uplink(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.gw_mac, self.node.uplink_mac, n::ETH_P_IP, l3)
    }

    /// What the node sends to the pod.
    fn to_pod(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.pod_mac, self.node.pod_host_mac, n::ETH_P_IPV6, l3)
    }
}

/// Asserts `out` is `want` byte for byte (after `patch`), with valid checksums, and that exactly
/// one counter moved, the given one.
#[track_caller]
fn check(out: &Out, verdict_want: i32, want: Option<&[u8]>, reason: Reason) {
    assert_eq!(
        out.verdict,
        verdict_want,
        "verdict; counted {:?}; got {}",
        out.counted,
        packet::describe(&out.pkt)
    );
    let want_counts: BTreeMap<&'static str, u64> = [(reason.name(), 1)].into();
    assert_eq!(out.counted, want_counts, "counters");
    if let Some(want) = want {
        if out.pkt != want {
            panic!(
                "output differs\n  got:  {}\n  want: {}\n  got:  {:02x?}\n  want: {:02x?}",
                packet::describe(&out.pkt),
                packet::describe(want),
                out.pkt,
                want
            );
        }
        packet::verify_checksums(&out.pkt).unwrap_or_else(|e| panic!("checksums: {e}"));
    }
}

/// IPv4 Identification and source port of a translated packet (the generator's and the
/// binding's choices, which the expected packet then uses).
fn v4_id(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[18], p[19]])
}

fn v4_sport(p: &[u8]) -> u16 {
    let ihl = usize::from(p[14] & 0x0f) * 4;
    u16::from_be_bytes([p[14 + ihl], p[15 + ihl]])
}

fn v4_echo_id(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[14 + 20 + 4], p[14 + 20 + 5]])
}

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

/// A TCP segment from the pod, as a frame.
fn pod_tcp(e: &Env, x: u16, fl: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let seg = n::tcp(
        x,
        80,
        1000,
        2000,
        fl,
        opts,
        payload,
        Pseudo::V6(POD, srv6()),
    );
    e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::TCP, &seg))
}

/// A TCP segment from the server to the pool, as a frame.
fn srv_tcp(e: &Env, t: u16, fl: u8, opts: &[u8]) -> Vec<u8> {
    let seg = n::tcp(80, t, 5000, 1001, fl, opts, &[], Pseudo::V4(SRV, POOL));
    e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::TCP, &seg))
}

#[test]
fn tcp_handshake_states_mss_clamp_and_close() {
    use sixlane_common::nat64::tcp::State;
    let mut e = env(&default_cfg());

    // A data segment without a session does not open one (RFC 6146 §3.5.2.2).
    let out = e.run(PROG_FROM_POD, &pod_tcp(&e, 41000, flags::ACK, &[], b"x"));
    check(&out, verdict::SHOT, None, Reason::Nat64NoSession);

    // SYN with an MSS larger than the IPv4 uplink carries: clamped to 1500 − 40.
    let out = e.run(
        PROG_FROM_POD,
        &pod_tcp(&e, 41000, flags::SYN, &n::mss_option(8960), &[]),
    );
    let t = v4_sport(&out.pkt);
    let seg = n::tcp(
        t,
        80,
        1000,
        2000,
        flags::SYN,
        &n::mss_option(1460),
        &[],
        Pseudo::V4(POOL, SRV),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_uplink(&n::ipv4(&h, n::TCP, &seg))),
        Reason::Nat64Out,
    );
    assert_eq!(e.tcp_state(41000, 80), Some(State::V6Init as u8));

    // SYN-ACK with a large MSS: clamped for the pod's segments that will leave as IPv4.
    let out = e.run(
        PROG_FROM_UPLINK,
        &srv_tcp(&e, t, flags::SYN | flags::ACK, &n::mss_option(9000)),
    );
    let seg = n::tcp(
        80,
        41000,
        5000,
        1001,
        flags::SYN | flags::ACK,
        &n::mss_option(1460),
        &[],
        Pseudo::V6(srv6(), POD),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&n::ipv6(0, 0, 63, srv6(), POD, n::TCP, &seg))),
        Reason::Nat64InPeer,
    );
    assert_eq!(e.tcp_state(41000, 80), Some(State::Established as u8));

    // A smaller MSS is left alone.
    let out = e.run(
        PROG_FROM_UPLINK,
        &srv_tcp(&e, t, flags::SYN | flags::ACK, &n::mss_option(1200)),
    );
    let seg = n::tcp(
        80,
        41000,
        5000,
        1001,
        flags::SYN | flags::ACK,
        &n::mss_option(1200),
        &[],
        Pseudo::V6(srv6(), POD),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&n::ipv6(0, 0, 63, srv6(), POD, n::TCP, &seg))),
        Reason::Nat64InPeer,
    );

    // Data with a payload of odd length (checksum padding).
    let out = e.run(
        PROG_FROM_POD,
        &pod_tcp(
            &e,
            41000,
            flags::ACK | flags::PSH,
            &[],
            b"GET / HTTP/1.0\r\n\r\n!",
        ),
    );
    let seg = n::tcp(
        t,
        80,
        1000,
        2000,
        flags::ACK | flags::PSH,
        &[],
        b"GET / HTTP/1.0\r\n\r\n!",
        Pseudo::V4(POOL, SRV),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_uplink(&n::ipv4(&h, n::TCP, &seg))),
        Reason::Nat64Out,
    );

    // Orderly close: FIN from the pod, then from the server.
    e.run(
        PROG_FROM_POD,
        &pod_tcp(&e, 41000, flags::FIN | flags::ACK, &[], &[]),
    );
    assert_eq!(e.tcp_state(41000, 80), Some(State::V6FinRcv as u8));
    e.run(
        PROG_FROM_UPLINK,
        &srv_tcp(&e, t, flags::FIN | flags::ACK, &[]),
    );
    assert_eq!(e.tcp_state(41000, 80), Some(State::V6FinV4Fin as u8));
    // The client reuses the port (TIME_WAIT reuse): a new SYN reopens the session, same binding.
    let out = e.run(PROG_FROM_POD, &pod_tcp(&e, 41000, flags::SYN, &[], &[]));
    assert_eq!(out.verdict, verdict::REDIRECT);
    assert_eq!(v4_sport(&out.pkt), t);
    assert_eq!(e.tcp_state(41000, 80), Some(State::V6Init as u8));
    // RST from the server: transitory.
    e.run(PROG_FROM_UPLINK, &srv_tcp(&e, t, flags::RST, &[]));
    assert_eq!(e.tcp_state(41000, 80), Some(State::Trans as u8));

    // An IPv4 host cannot open TCP towards a pod: unsolicited, even to a live binding.
    let seg = n::tcp(
        80,
        t,
        1,
        0,
        flags::SYN,
        &[],
        &[],
        Pseudo::V4(Ipv4Addr::new(198, 18, 9, 9), POOL),
    );
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(
            &V4::new(Ipv4Addr::new(198, 18, 9, 9), POOL),
            n::TCP,
            &seg,
        )),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    let seg = n::tcp(
        80,
        free_port(&[t]),
        1,
        0,
        flags::SYN,
        &[],
        &[],
        Pseudo::V4(SRV, POOL),
    );
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::TCP, &seg)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
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
    // A pod's echo reply or an informational message to the prefix is not translated.
    for ty in [129u8, 130, 133, 135, 200] {
        let m = n::icmp(ty, 0, [0; 4], b"", Pseudo::V6(POD, srv6()));
        let out = e.run(
            PROG_FROM_POD,
            &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &m)),
        );
        check(&out, verdict::SHOT, None, Reason::Nat64IcmpDropped);
    }
}

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

#[test]
fn endpoint_independent_filtering_is_configurable() {
    let stranger = Ipv4Addr::new(198, 18, 7, 7);
    for eif in [true, false] {
        let mut cfg = default_cfg();
        cfg.endpoint_independent_filtering = eif;
        let mut e = env(&cfg);
        let t = e.udp_session(POD, 40000, 53);
        let d = n::udp(3478, t, b"stun", Pseudo::V4(stranger, POOL), false);
        let out = e.run(
            PROG_FROM_UPLINK,
            &e.uplink_frame(&n::ipv4(&V4::new(stranger, POOL), n::UDP, &d)),
        );
        if eif {
            let s6 = n::embed96(PREFIX, stranger);
            let want = n::ipv6(
                0,
                0,
                63,
                s6,
                POD,
                n::UDP,
                &n::udp(3478, 40000, b"stun", Pseudo::V6(s6, POD), false),
            );
            // A session opened from the IPv4 side knows no pod veth: through the veth's egress.
            check(
                &out,
                verdict::REDIRECT,
                Some(&e.to_pod(&want)),
                Reason::Nat64In,
            );
        } else {
            check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
        }
    }
}

#[test]
fn pool_exhaustion_answers_new_flows_and_keeps_old_ones() {
    let cfg = n::config(
        "fd00:6464::/96",
        &[POOL],
        &["fd00:10::/64"],
        Span::new(40000, 40001),
    );
    let mut e = env(&cfg);
    let t1 = e.udp_session(POD, 1001, 53);
    let t2 = e.udp_session(POD2, 1002, 53);
    assert_ne!(t1, t2);
    let up = n::udp(1003, 53, b"third", Pseudo::V6(POD, srv6()), false);
    let orig = n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&orig));
    let me = n::embed96(PREFIX, POOL);
    // RFC 6146 §3.5.1.1: Destination Unreachable, code 3 (address unreachable).
    let want = n::ipv6(
        0,
        0,
        64,
        me,
        POD,
        n::ICMPV6,
        &n::icmp(1, 3, [0; 4], &orig, Pseudo::V6(me, POD)),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&want)),
        Reason::Nat64PoolExhausted,
    );
    // The existing flows are untouched.
    assert_eq!(e.udp_session(POD, 1001, 53), t1);
    assert_eq!(e.udp_session(POD2, 1002, 53), t2);
    // ICMP has its own identifier range: still free.
    let req = n::icmp(128, 0, n::echo_rest(9, 1), b"", Pseudo::V6(POD, srv6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::ICMPV6, &req)),
    );
    assert_eq!(out.verdict, verdict::REDIRECT);
}

#[test]
fn packet_too_big_both_ways_from_the_routes() {
    let mut e = env(&default_cfg());
    e.node
        .uplink
        .a
        .ip(&["link", "set", "{}", "mtu", "1400"])
        .unwrap();
    e.node
        .pod
        .a
        .ip(&["link", "set", "{}", "mtu", "1400"])
        .unwrap();
    // 1500 bytes of IPv6 become 1480 of IPv4: too big for the 1400 uplink → PTB 1420 to the pod.
    let up = n::udp(40000, 53, &[1u8; 1500 - 48], Pseudo::V6(POD, srv6()), false);
    let orig = n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&orig));
    let me = n::embed96(PREFIX, POOL);
    let quote = &orig[..1280 - 48];
    let want = n::ipv6(
        0,
        0,
        64,
        me,
        POD,
        n::ICMPV6,
        &n::icmp(2, 0, 1420u32.to_be_bytes(), quote, Pseudo::V6(me, POD)),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_pod(&want)),
        Reason::Nat64TooBig,
    );
    // 1420 bytes fit.
    let up = n::udp(40000, 53, &[1u8; 1420 - 48], Pseudo::V6(POD, srv6()), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up)),
    );
    assert_eq!(out.verdict, verdict::REDIRECT);
    let t = v4_sport(&out.pkt);
    // A 1400-byte IPv4 reply becomes 1420 bytes of IPv6: too big for the 1400 pod link →
    // Fragmentation Needed, MTU 1380, to the server (RFC 1191 style, from the pool address).
    let h = V4 {
        df: true,
        ..V4::new(SRV, POOL)
    };
    let orig = n::ipv4(
        &h,
        n::UDP,
        &n::udp(53, t, &[2u8; 1400 - 28], Pseudo::V4(SRV, POOL), false),
    );
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&orig));
    let h = V4 {
        id: v4_id(&out.pkt),
        ..V4::new(POOL, SRV)
    };
    let want = n::ipv4(
        &h,
        n::ICMP,
        &n::icmp(3, 4, [0, 0, 0x05, 0x64], &orig[..576 - 28], Pseudo::None),
    );
    check(
        &out,
        verdict::REDIRECT,
        Some(&e.to_uplink(&want)),
        Reason::Nat64TooBig,
    );
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

/// Garbage collection on the pinned tables: idle sessions go by their timeouts, then their
/// bindings, and the freed pool ports are handed out again.
#[test]
fn garbage_collection_expires_sessions_and_frees_ports() {
    use sixlane_agent::nat64::gc;
    let mut cfg = n::config(
        "fd00:6464::/96",
        &[POOL],
        &["fd00:10::/64"],
        Span::new(40000, 40000),
    );
    cfg.timeouts.udp = 30;
    let mut e = env(&cfg);
    let t = e.udp_session(POD, 1001, 53);
    assert_eq!(t, 40000);
    // The only port is taken: a second pod transport address is refused.
    let up = n::udp(1002, 53, b"x", Pseudo::V6(POD, srv6()), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up)),
    );
    assert_eq!(out.counted.get(Reason::Nat64PoolExhausted.name()), Some(&1));

    let now = state::monotonic_ns();
    // Not idle long enough: everything stays.
    let r = gc::collect_at(&e.layout, &cfg, now + 20_000_000_000).unwrap();
    assert_eq!(
        (r.sessions, r.sessions_expired, r.bindings),
        (1, 0, 1),
        "{r:?}"
    );
    // Past the UDP timeout: the session goes, and with it the binding (older than its grace).
    let r = gc::collect_at(&e.layout, &cfg, now + 31_000_000_000).unwrap();
    assert_eq!(
        (r.sessions, r.sessions_expired, r.bindings_removed),
        (0, 1, 1),
        "{r:?}"
    );
    assert!(state::sessions(&e.layout).unwrap().is_empty());
    assert!(state::bindings(&e.layout).unwrap().is_empty());
    // The port is free again, for anyone.
    assert_eq!(e.udp_session(POD, 1002, 53), 40000);

    // A pool address leaving the configuration takes its state along.
    let mut moved = cfg.clone();
    moved.pool = vec![Ipv4Addr::new(198, 18, 0, 9)];
    let r = gc::collect_at(&e.layout, &moved, state::monotonic_ns()).unwrap();
    assert_eq!(r.sessions_expired, 1, "{r:?}");
    assert!(state::sessions(&e.layout).unwrap().is_empty());
}

/// The agent can size the tables for its pool (`Nat64Config::max_entries`) at load time.
#[test]
fn tables_sized_for_the_pool() {
    sixlane_testkit::require_root();
    let mut cfg = default_cfg();
    cfg.pool = (1..=4).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
    cfg.ports = sixlane_agent::nat64::Ports {
        tcp: Span::new(1024, 65535),
        udp: Span::new(1024, 65535),
        icmp: Span::new(1024, 65535),
    };
    let sizes = cfg.max_entries();
    let pins = PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    let opts = sixlane_agent::loader::LoadOptions {
        max_entries: sizes.clone(),
        ..Default::default()
    };
    let _dp = Datapath::load(&layout, &opts).unwrap();
    for (name, want) in &sizes {
        let info = aya::maps::MapInfo::from_pin(layout.map(name)).unwrap();
        assert_eq!(info.max_entries(), *want, "{name}");
    }
    n::apply(&layout, &cfg);
}

/// The IN-side session entry of pool port `t` (UDP).
fn in_session(e: &Env, t: u16) -> sixlane_common::nat64::maps::Session {
    state::sessions(&e.layout)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.dir == sixlane_common::nat64::maps::DIR_IN && k.port == t)
        .map(|(_, v)| v)
        .expect("IN session entry")
}

/// SRV:53's UDP reply to POD's session (x ↔ t) run through the uplink program, and the packet
/// the pod must get.
fn udp_reply(e: &mut Env, x: u16, t: u16) -> (Out, Vec<u8>) {
    let down = n::udp(53, t, b"answer", Pseudo::V4(SRV, POOL), false);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::UDP, &down)),
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        srv6(),
        POD,
        n::UDP,
        &n::udp(53, x, b"answer", Pseudo::V6(srv6(), POD), false),
    ));
    (out, want)
}

/// Replies of sessions a local pod opened go straight into that pod (`bpf_redirect_peer`,
/// counted `nat64_in_peer`: the session remembers the pod's veth and the node's route to the
/// pod still leaves through it). Sessions opened through the uplink (pods of route-mode nodes)
/// and replies while the pod fast path is off take the veth's egress (`nat64_in`). The packet
/// is the same either way.
#[test]
fn replies_go_straight_into_the_pod_that_opened_the_session() {
    use aya::maps::{Array, MapData};
    use sixlane_common::{
        layout::MAP_SVC_CONFIG,
        services::{Config, config_flags},
    };
    let mut e = env(&default_cfg());

    let t = e.udp_session(POD, 40010, 53);
    assert_eq!(in_session(&e, t).ifindex, e.node.pod_if);
    let (out, want) = udp_reply(&mut e, 40010, t);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InPeer);

    // The same pod's datagram arriving on the uplink (routed here by a node without IPv4).
    let up = n::udp(40011, 53, b"open", Pseudo::V6(POD, srv6()), false);
    let frame = n::eth(
        e.node.uplink_mac,
        e.node.gw_mac,
        n::ETH_P_IPV6,
        &n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up),
    );
    let out = e.run(PROG_FROM_UPLINK, &frame);
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    let t2 = v4_sport(&out.pkt);
    assert_eq!(in_session(&e, t2).ifindex, 0, "no pod veth is known");
    let (out, want) = udp_reply(&mut e, 40011, t2);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64In);

    // Fast path off (`services.podFastPath: false`): the session still records the veth, the
    // reply goes through it.
    {
        let mut cfg: Array<&mut MapData, Config> =
            Array::try_from(e.dp.ebpf_mut().map_mut(MAP_SVC_CONFIG).unwrap()).unwrap();
        let mut c = cfg.get(&0, 0).unwrap();
        c.flags = config_flags::NO_POD_FAST_PATH;
        cfg.set(0, c, 0).unwrap();
    }
    let (out, want) = udp_reply(&mut e, 40010, t);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64In);
}

/// Replies of a pod's session go back through the veth the pod sent from, with the Ethernet
/// addresses learned from the pod's own packets and no route lookup: they still reach the pod
/// while the node has no route to it, the veth's MTU still answers a reply that would not fit
/// (`packet_too_big_both_ways_from_the_routes`), and a session whose veth is gone falls back to
/// the node's routes.
#[test]
fn replies_follow_the_link_the_pod_sent_from() {
    use aya::maps::{HashMap, MapData};
    use sixlane_common::{
        layout::{MAP_NAT64_POD_LINKS, MAP_NAT64_SESSIONS},
        nat64::maps::{DIR_IN, PodLink, Session, SessionKey},
    };
    let mut e = env(&default_cfg());

    let t = e.udp_session(POD, 40020, 53);
    {
        let links: HashMap<&MapData, u32, PodLink> =
            HashMap::try_from(e.dp.ebpf().map(MAP_NAT64_POD_LINKS).unwrap()).unwrap();
        let want = PodLink {
            pod_mac: e.node.pod_mac,
            host_mac: e.node.pod_host_mac,
            _pad: 0,
        };
        assert_eq!(links.get(&e.node.pod_if, 0).unwrap(), want);
        assert_eq!(links.keys().count(), 1, "one link per veth");
    }

    // The node loses its route to the pod (its /128 and neighbour): the session's replies
    // still go through the veth the pod sent from, same packet.
    e.node
        .pod
        .a
        .ip(&["-6", "route", "del", &format!("{POD}/128"), "dev", "{}"])
        .unwrap();
    let (out, want) = udp_reply(&mut e, 40020, t);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InPeer);

    // A session recorded on a veth that no longer exists: the node's routes decide (restored,
    // they lead out of the pod's current veth, through its egress).
    e.node
        .pod
        .a
        .ip(&["-6", "route", "add", &format!("{POD}/128"), "dev", "{}"])
        .unwrap();
    let gone = 0x7fff_0000;
    {
        let mut sessions: HashMap<&mut MapData, SessionKey, Session> =
            HashMap::try_from(e.dp.ebpf_mut().map_mut(MAP_NAT64_SESSIONS).unwrap()).unwrap();
        let (k, mut v) = sessions
            .iter()
            .map(Result::unwrap)
            .find(|(k, _)| k.dir == DIR_IN && k.port == t)
            .expect("IN entry");
        v.ifindex = gone;
        sessions.insert(k, v, 0).unwrap();
    }
    {
        let mut links: HashMap<&mut MapData, u32, PodLink> =
            HashMap::try_from(e.dp.ebpf_mut().map_mut(MAP_NAT64_POD_LINKS).unwrap()).unwrap();
        let l = links.get(&e.node.pod_if, 0).unwrap();
        links.insert(gone, l, 0).unwrap();
    }
    let (out, want) = udp_reply(&mut e, 40020, t);
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64In);
}

/// Pins the calling thread to the CPU it runs on until dropped: the route slots
/// (`fwd::lookup4_cached`) are per CPU, so packets meant to share one must run on one CPU.
struct OnOneCpu(nix::sched::CpuSet);

impl OnOneCpu {
    fn new() -> Self {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        use nix::unistd::Pid;
        let before = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
        // SAFETY: plain libc call without arguments.
        let cpu = unsafe { nix::libc::sched_getcpu() };
        let mut one = CpuSet::new();
        one.set(usize::try_from(cpu).expect("cpu"))
            .expect("cpu in set");
        sched_setaffinity(Pid::from_raw(0), &one).expect("pin");
        Self(before)
    }
}

impl Drop for OnOneCpu {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.0);
    }
}

/// Translated packets reuse the route their flow's previous packet looked up on the same CPU
/// for at most 100 ms (`fwd::ROUTE_TTL_NS`): a neighbour change reaches the flow after that
/// time, and a packet larger than any the reused route was checked for is looked up at once
/// (here: too big for the lowered uplink MTU → Packet Too Big straight away).
#[test]
fn outbound_routes_are_reused_briefly_and_never_for_larger_packets() {
    let mut e = env(&default_cfg());
    let gw = e.node.gw_mac;
    let moved = [0x02, 0, 0, 0, 0x99, 0x99];
    let set_gw = |e: &Env, mac: [u8; 6]| n::set_gateway_mac(&e.node.uplink.a, mac);
    let set_mtu = |e: &Env, mtu: u32| {
        e.node
            .uplink
            .a
            .ip(&["link", "set", "{}", "mtu", &mtu.to_string()])
            .unwrap();
    };
    let frame = |e: &Env, len: usize| {
        let up = n::udp(
            40000,
            53,
            &vec![1u8; len - 48],
            Pseudo::V6(POD, srv6()),
            false,
        );
        e.pod_frame(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up))
    };
    let dmac = |p: &[u8]| <[u8; 6]>::try_from(&p[..6]).unwrap();
    let small = frame(&e, 1000);
    let large = frame(&e, 1400);
    let _pin = OnOneCpu::new();
    // The machine may be too slow to send three packets within the reuse time: retried.
    let mut shown = false;
    for _ in 0..5 {
        set_gw(&e, gw);
        set_mtu(&e, 1500);
        std::thread::sleep(std::time::Duration::from_millis(150));
        let t0 = std::time::Instant::now();
        let (v, first) = e.run_fast(PROG_FROM_POD, &small);
        assert_eq!((v, dmac(&first)), (verdict::REDIRECT, gw), "looked up");
        set_gw(&e, moved);
        set_mtu(&e, 1300);
        let (v, second) = e.run_fast(PROG_FROM_POD, &small);
        let (v2, third) = e.run_fast(PROG_FROM_POD, &large);
        if t0.elapsed() >= std::time::Duration::from_millis(60) {
            continue;
        }
        assert_eq!((v, dmac(&second)), (verdict::REDIRECT, gw), "route reused");
        // 1400 bytes of IPv6 → 1380 of IPv4 > 1300: PTB 1320, though the route was fresh.
        assert_eq!(v2, verdict::REDIRECT);
        assert_eq!(&third[14 + 40..14 + 40 + 2], &[2, 0], "Packet Too Big");
        assert_eq!(&third[14 + 44..14 + 48], &1320u32.to_be_bytes());
        shown = true;
        break;
    }
    assert!(shown, "never sent three packets within 60 ms");
    // Once the reuse time is over, the flow follows the new neighbour.
    set_mtu(&e, 1500);
    std::thread::sleep(std::time::Duration::from_millis(150));
    let out = e.run(PROG_FROM_POD, &small);
    assert_eq!(dmac(&out.pkt), moved, "looked up again");
    assert_eq!(out.counted, [(Reason::Nat64Out.name(), 1)].into());
}
