//! NAT64 hairpinning (RFC 6146 §3.8) through `BPF_PROG_TEST_RUN`: a pod sending to
//! Pref64::<pool address> and the port of a static binding or of another pod's binding reaches
//! that pod, from Pref64::<pool address> and its own pool port, and the answers come back the
//! same way; ICMPv6 errors about such flows reach the pod that sent the packet they quote;
//! echo requests to the pool address are answered; ports nothing holds stay refused.

use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};

use sixlane_agent::nat64::{
    Nat64Config, state,
    statics::{Protocol, StaticBinding},
};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
    nat64::{maps::DIR_OUT, tcp::State},
};
use sixlane_testkit::fixture::verdict;
use sixlane_tests::nat64::{
    self as n, Pseudo, flags,
    xlat::{Env, POD, POD2, POOL, PREFIX, check, default_cfg, env, free_port},
};

/// The pool address as the pods address it.
fn pool6() -> Ipv6Addr {
    n::embed96(PREFIX, POOL)
}

/// POD's port.
const X1: u16 = 40000;

/// `default_cfg` (dynamic ports 61001–61100) with TCP POOL:8080 → POD2:80 and UDP POOL:5300 →
/// POD2:53.
fn hairpin_cfg() -> Nat64Config {
    let mut c = default_cfg();
    c.static_bindings = vec![
        StaticBinding {
            protocol: Protocol::Tcp,
            ipv4: SocketAddrV4::new(POOL, 8080),
            ipv6: SocketAddrV6::new(POD2, 80, 0, 0),
        },
        StaticBinding {
            protocol: Protocol::Udp,
            ipv4: SocketAddrV4::new(POOL, 5300),
            ipv6: SocketAddrV6::new(POD2, 53, 0, 0),
        },
    ];
    c
}

/// A TCP segment `from`:`sport` → `to`:`dport` as a frame from a pod.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    e: &Env,
    (from, sport): (Ipv6Addr, u16),
    (to, dport): (Ipv6Addr, u16),
    seq: u32,
    ack: u32,
    fl: u8,
    opts: &[u8],
    hop: u8,
) -> Vec<u8> {
    let seg = n::tcp(sport, dport, seq, ack, fl, opts, &[], Pseudo::V6(from, to));
    e.pod_frame(&n::ipv6(0, 0, hop, from, to, n::TCP, &seg))
}

/// A UDP datagram `from`:`sport` → `to`:`dport` (IPv6 header and all).
fn udp6(
    (from, sport): (Ipv6Addr, u16),
    (to, dport): (Ipv6Addr, u16),
    payload: &[u8],
    hop: u8,
) -> Vec<u8> {
    let u = n::udp(sport, dport, payload, Pseudo::V6(from, to), false);
    n::ipv6(0, 0, hop, from, to, n::UDP, &u)
}

/// Source port of a delivered IPv6 TCP or UDP packet: the sender's pool port.
fn v6_sport(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[14 + 40], p[14 + 41]])
}

/// The TCP state of the IPv6-side session of `pod`:`port`.
fn tcp_state(e: &Env, pod: Ipv6Addr, port: u16) -> Option<State> {
    state::sessions(&e.layout)
        .unwrap()
        .into_iter()
        .find(|(k, _)| {
            k.dir == DIR_OUT && k.proto == n::TCP && k.addr == pod.octets() && k.port == port
        })
        .map(|(_, v)| State::from_u8(v.state))
}

#[test]
fn a_pod_opens_tcp_to_another_through_its_static_binding() {
    let mut e = env(&hairpin_cfg());
    let mss = n::mss_option(1440);
    // POD's SYN to [Pref64::POOL]:8080 reaches POD2:80 from [Pref64::POOL]:t1, t1 being POD's
    // own pool port; one router hop; nothing leaves as IPv4.
    let syn = tcp_frame(
        &e,
        (POD, X1),
        (pool6(), 8080),
        1000,
        0,
        flags::SYN,
        &mss,
        64,
    );
    let out = e.run(PROG_FROM_POD, &syn);
    let t1 = v6_sport(&out.pkt);
    assert!(
        (61001..=61100).contains(&t1),
        "POD's pool port {t1}; counted {:?}",
        out.counted
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        pool6(),
        POD2,
        n::TCP,
        &n::tcp(
            t1,
            80,
            1000,
            0,
            flags::SYN,
            &mss,
            &[],
            Pseudo::V6(pool6(), POD2),
        ),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);
    assert_eq!(tcp_state(&e, POD, X1), Some(State::V6Init));
    assert_eq!(tcp_state(&e, POD2, 80), Some(State::V4Init));

    // POD2's SYN-ACK to [Pref64::POOL]:t1 reaches POD:X1 from [Pref64::POOL]:8080.
    let syn_ack = tcp_frame(
        &e,
        (POD2, 80),
        (pool6(), t1),
        5000,
        1001,
        flags::SYN | flags::ACK,
        &mss,
        64,
    );
    let out = e.run(PROG_FROM_POD, &syn_ack);
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        pool6(),
        POD,
        n::TCP,
        &n::tcp(
            8080,
            X1,
            5000,
            1001,
            flags::SYN | flags::ACK,
            &mss,
            &[],
            Pseudo::V6(pool6(), POD),
        ),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);
    // Both sessions saw the handshake, each from its side.
    assert_eq!(tcp_state(&e, POD, X1), Some(State::Established));
    assert_eq!(tcp_state(&e, POD2, 80), Some(State::Established));

    // The ACK goes through too.
    let ack = tcp_frame(
        &e,
        (POD, X1),
        (pool6(), 8080),
        1001,
        5001,
        flags::ACK,
        &[],
        64,
    );
    let out = e.run(PROG_FROM_POD, &ack);
    check(&out, verdict::REDIRECT, None, Reason::Nat64Hairpin);
}

#[test]
fn udp_through_a_static_binding_and_to_another_pods_binding() {
    let mut e = env(&hairpin_cfg());
    let q = udp6((POD, X1), (pool6(), 5300), b"query", 64);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&q));
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    let t1 = v6_sport(&out.pkt);
    let want = e.to_pod(&udp6((pool6(), t1), (POD2, 53), b"query", 63));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);
    // The answer.
    let a = udp6((POD2, 53), (pool6(), t1), b"answer", 64);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&a));
    let want = e.to_pod(&udp6((pool6(), 5300), (POD, X1), b"answer", 63));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);

    // POD2's dynamic UDP binding (made talking to an IPv4 server) takes POD's datagrams too
    // (endpoint-independent filtering), from POD's pool port.
    let t2 = e.udp_session(POD2, 7000, 53);
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&udp6((POD, X1), (pool6(), t2), b"direct", 64)),
    );
    let want = e.to_pod(&udp6((pool6(), t1), (POD2, 7000), b"direct", 63));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);
}

#[test]
fn icmpv6_errors_about_hairpinned_flows_reach_the_sender() {
    let mut e = env(&hairpin_cfg());
    let q = udp6((POD, X1), (pool6(), 5300), b"to a closed port", 64);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&q));
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    let t1 = v6_sport(&out.pkt);
    let delivered = out.pkt[14..].to_vec();

    // POD2's port unreachable about it reaches POD, from Pref64::POOL, quoting the datagram as
    // POD sent it (hop limit as delivered).
    let err = n::icmp(1, 4, [0; 4], &delivered, Pseudo::V6(POD2, pool6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD2, pool6(), n::ICMPV6, &err)),
    );
    let quoted = udp6((POD, X1), (pool6(), 5300), b"to a closed port", 63);
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        pool6(),
        POD,
        n::ICMPV6,
        &n::icmp(1, 4, [0; 4], &quoted, Pseudo::V6(pool6(), POD)),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);

    // Packet Too Big from POD2's side about a hairpinned TCP segment keeps its MTU.
    let syn = tcp_frame(&e, (POD, X1), (pool6(), 8080), 1000, 0, flags::SYN, &[], 64);
    let out = e.run(PROG_FROM_POD, &syn);
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    let delivered = out.pkt[14..].to_vec();
    let ptb = n::icmp(
        2,
        0,
        1400u32.to_be_bytes(),
        &delivered,
        Pseudo::V6(POD2, pool6()),
    );
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD2, pool6(), n::ICMPV6, &ptb)),
    );
    let seg = n::tcp(
        X1,
        8080,
        1000,
        0,
        flags::SYN,
        &[],
        &[],
        Pseudo::V6(POD, pool6()),
    );
    let quoted = n::ipv6(0, 0, 63, POD, pool6(), n::TCP, &seg);
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        pool6(),
        POD,
        n::ICMPV6,
        &n::icmp(
            2,
            0,
            1400u32.to_be_bytes(),
            &quoted,
            Pseudo::V6(pool6(), POD),
        ),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);

    // An error quoting a packet from a pool port no session holds is dropped.
    let stray = udp6((pool6(), free_port(&[t1])), (POD2, 53), b"?", 63);
    let err = n::icmp(1, 4, [0; 4], &stray, Pseudo::V6(POD2, pool6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD2, pool6(), n::ICMPV6, &err)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64IcmpNoSession);
}

/// A hairpinned packet too big for the receiving pod's link gets Packet Too Big from the
/// translator.
#[test]
fn a_hairpinned_packet_too_big_for_the_other_pod_is_answered() {
    let mut e = env(&hairpin_cfg());
    let big = udp6((POD, X1), (pool6(), 5300), &[7u8; 1500], 64);
    let out = e.run(PROG_FROM_POD, &e.pod_frame(&big));
    // The pod veth's MTU is 1500; the error quotes what fits in 1280 bytes.
    let quoted = &big[..1280 - 48];
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        64,
        pool6(),
        POD,
        n::ICMPV6,
        &n::icmp(
            2,
            0,
            1500u32.to_be_bytes(),
            quoted,
            Pseudo::V6(pool6(), POD),
        ),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64TooBig);
}

#[test]
fn echo_requests_to_the_pool_address_are_answered() {
    let mut e = env(&hairpin_cfg());
    let body = b"ping the node through the prefix";
    let req = n::icmp(128, 0, n::echo_rest(77, 1), body, Pseudo::V6(POD, pool6()));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, pool6(), n::ICMPV6, &req)),
    );
    let rep = n::icmp(129, 0, n::echo_rest(77, 1), body, Pseudo::V6(pool6(), POD));
    let want = e.to_pod(&n::ipv6(0, 0, 64, pool6(), POD, n::ICMPV6, &rep));
    check(
        &out,
        verdict::REDIRECT,
        Some(&want),
        Reason::Nat64HairpinEcho,
    );
    assert!(state::sessions(&e.layout).unwrap().is_empty(), "no state");
    // An echo reply to the pool address answers nothing.
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, pool6(), n::ICMPV6, &rep)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64NoSession);
}

#[test]
fn pool_ports_nothing_holds_stay_refused() {
    let mut e = env(&hairpin_cfg());
    // POD's UDP binding, so that the free port below is not its own.
    let t1 = e.udp_session(POD, X1, 53);
    for input in [
        // A port outside the dynamic range without a static binding (the node's own).
        tcp_frame(&e, (POD, X1), (pool6(), 8081), 1, 0, flags::SYN, &[], 64),
        // The static TCP port over UDP.
        e.pod_frame(&udp6((POD, X1), (pool6(), 8080), b"x", 64)),
        // A dynamic port without a session or binding.
        e.pod_frame(&udp6((POD, X1), (pool6(), free_port(&[t1])), b"x", 64)),
    ] {
        let out = e.run(PROG_FROM_POD, &input);
        check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    }
    // Without static bindings: a TCP SYN to another pod's dynamic UDP port, and to a port
    // outside the dynamic range.
    let mut plain = env(&default_cfg());
    let t2 = plain.udp_session(POD2, 7000, 53);
    for port in [t2, 8080] {
        let syn = tcp_frame(
            &plain,
            (POD, X1),
            (pool6(), port),
            1,
            0,
            flags::SYN,
            &[],
            64,
        );
        let out = plain.run(PROG_FROM_POD, &syn);
        check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    }
}

/// A pod of a node without IPv4 (its traffic to the prefix routed here, arriving on the uplink)
/// hairpins like a local one.
#[test]
fn a_route_mode_nodes_pod_hairpins_from_the_uplink() {
    let mut e = env(&hairpin_cfg());
    let remote = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xc);
    let q = udp6((remote, X1), (pool6(), 5300), b"from afar", 64);
    let frame = n::eth(e.node.uplink_mac, e.node.gw_mac, n::ETH_P_IPV6, &q);
    let out = e.run(PROG_FROM_UPLINK, &frame);
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
    let t1 = v6_sport(&out.pkt);
    let want = e.to_pod(&udp6((pool6(), t1), (POD2, 53), b"from afar", 63));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Hairpin);
}
