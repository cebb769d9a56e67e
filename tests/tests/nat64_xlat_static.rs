//! NAT64 static bindings (RFC 6146 §3.5.1 static BIB entries) through `BPF_PROG_TEST_RUN`: IPv4
//! hosts opening TCP, UDP and ICMP echo sessions to a pod through a pool address and port, the
//! pod's answers, the pod's own traffic from its bound transport address, what stays refused or
//! the node's, and the agent reconciling the entries.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use sixlane_agent::nat64::{
    Nat64Config, state,
    statics::{self, Protocol, StaticBinding},
};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
    nat64::{maps::DIR_IN, tcp::State},
};
use sixlane_testkit::fixture::verdict;
use sixlane_tests::nat64::{
    self as n, Pseudo, V4, flags,
    xlat::{Env, POD, POD2, POOL, PREFIX, SRV, check, default_cfg, env, free_port, v4_id},
};

/// The IPv4 client opening connections, and its IPv6 form under the prefix.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 20);
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 21);

fn client6(c: Ipv4Addr) -> Ipv6Addr {
    n::embed96(PREFIX, c)
}

fn binding(protocol: Protocol, t: u16, pod: Ipv6Addr, x: u16) -> StaticBinding {
    StaticBinding {
        protocol,
        ipv4: SocketAddrV4::new(POOL, t),
        ipv6: SocketAddrV6::new(pod, x, 0, 0),
    }
}

/// `default_cfg` (dynamic ports 61001–61100) with TCP POOL:8080 → POD:80, UDP POOL:5300 →
/// POD:53 and ICMP POOL id 7 → POD id 9.
fn static_cfg() -> Nat64Config {
    let mut c = default_cfg();
    c.static_bindings = vec![
        binding(Protocol::Tcp, 8080, POD, 80),
        binding(Protocol::Udp, 5300, POD, 53),
        binding(Protocol::Icmp, 7, POD, 9),
    ];
    c
}

/// A TCP segment from `c`:50000 to the pool, port `t`.
fn client_tcp(e: &Env, c: Ipv4Addr, t: u16, fl: u8, opts: &[u8]) -> Vec<u8> {
    let seg = n::tcp(50000, t, 7000, 0, fl, opts, &[], Pseudo::V4(c, POOL));
    e.uplink_frame(&n::ipv4(&V4::new(c, POOL), n::TCP, &seg))
}

/// The pod's TCP segment (from port 80) to the client's IPv6 form.
fn pod_tcp_to(e: &Env, c: Ipv4Addr, fl: u8) -> Vec<u8> {
    let seg = n::tcp(
        80,
        50000,
        9000,
        7001,
        fl,
        &[],
        &[],
        Pseudo::V6(POD, client6(c)),
    );
    e.pod_frame(&n::ipv6(0, 0, 64, POD, client6(c), n::TCP, &seg))
}

fn tcp_state(e: &Env, c: Ipv4Addr) -> Option<State> {
    state::sessions(&e.layout)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.dir != DIR_IN && k.proto == n::TCP && k.remote == c.octets())
        .map(|(_, v)| State::from_u8(v.state))
}

#[test]
fn an_ipv4_client_opens_tcp_to_a_pod_through_a_static_binding() {
    let mut e = env(&static_cfg());
    // The client's SYN: translated to the pod's transport address, from Pref64::client.
    let syn = client_tcp(&e, CLIENT, 8080, flags::SYN, &n::mss_option(1460));
    let out = e.run(PROG_FROM_UPLINK, &syn);
    let seg = n::tcp(
        50000,
        80,
        7000,
        0,
        flags::SYN,
        &n::mss_option(1460),
        &[],
        Pseudo::V6(client6(CLIENT), POD),
    );
    let want = e.to_pod(&n::ipv6(0, 0, 63, client6(CLIENT), POD, n::TCP, &seg));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InStatic);
    assert_eq!(tcp_state(&e, CLIENT), Some(State::V4Init));

    // The pod's SYN-ACK leaves from the static pool address and port.
    let out = e.run(
        PROG_FROM_POD,
        &pod_tcp_to(&e, CLIENT, flags::SYN | flags::ACK),
    );
    let seg = n::tcp(
        8080,
        50000,
        9000,
        7001,
        flags::SYN | flags::ACK,
        &[],
        &[],
        Pseudo::V4(POOL, CLIENT),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, CLIENT)
    };
    let want = e.to_uplink(&n::ipv4(&h, n::TCP, &seg));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);
    assert_eq!(tcp_state(&e, CLIENT), Some(State::Established));

    // The client's ACK belongs to the session now.
    let out = e.run(
        PROG_FROM_UPLINK,
        &client_tcp(&e, CLIENT, 8080, flags::ACK, &[]),
    );
    check(&out, verdict::REDIRECT, None, Reason::Nat64In);

    // Another client's segment other than a SYN opens nothing.
    let out = e.run(
        PROG_FROM_UPLINK,
        &client_tcp(&e, OTHER_CLIENT, 8080, flags::ACK, &[]),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    // A SYN-ACK is no opening either.
    let out = e.run(
        PROG_FROM_UPLINK,
        &client_tcp(&e, OTHER_CLIENT, 8080, flags::SYN | flags::ACK, &[]),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    // Its SYN does, to the same pod port.
    let out = e.run(
        PROG_FROM_UPLINK,
        &client_tcp(&e, OTHER_CLIENT, 8080, flags::SYN, &[]),
    );
    check(&out, verdict::REDIRECT, None, Reason::Nat64InStatic);
    assert_eq!(tcp_state(&e, OTHER_CLIENT), Some(State::V4Init));
}

#[test]
fn ports_without_a_static_binding_stay_refused_or_the_nodes() {
    let mut e = env(&static_cfg());
    // A SYN to a dynamic port without a session: unsolicited (held for a simultaneous open, the
    // default), as without static bindings.
    let out = e.run(
        PROG_FROM_UPLINK,
        &client_tcp(&e, CLIENT, free_port(&[]), flags::SYN, &[]),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);
    // Another port outside the dynamic range (and the static TCP port over UDP, the static
    // UDP port over TCP): the node's own, untouched.
    for input in [
        client_tcp(&e, CLIENT, 8081, flags::SYN, &[]),
        client_tcp(&e, CLIENT, 5300, flags::SYN, &[]),
        e.uplink_frame(&n::ipv4(
            &V4::new(CLIENT, POOL),
            n::UDP,
            &n::udp(50000, 8080, b"x", Pseudo::V4(CLIENT, POOL), false),
        )),
    ] {
        let out = e.run(PROG_FROM_UPLINK, &input);
        check(&out, verdict::NEXT, Some(&input), Reason::Pass);
    }
    // Without static bindings the static port is the node's too.
    let mut plain = env(&default_cfg());
    let input = client_tcp(&plain, CLIENT, 8080, flags::SYN, &[]);
    let out = plain.run(PROG_FROM_UPLINK, &input);
    check(&out, verdict::NEXT, Some(&input), Reason::Pass);
}

#[test]
fn udp_through_a_static_binding_and_from_the_bound_pod_port() {
    let mut e = env(&static_cfg());
    let q = n::udp(50000, 5300, b"query", Pseudo::V4(CLIENT, POOL), false);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(CLIENT, POOL), n::UDP, &q)),
    );
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        client6(CLIENT),
        POD,
        n::UDP,
        &n::udp(50000, 53, b"query", Pseudo::V6(client6(CLIENT), POD), false),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InStatic);
    // The second datagram finds the session.
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&V4::new(CLIENT, POOL), n::UDP, &q)),
    );
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64In);

    // The pod's port unreachable about it reaches the client about the datagram it sent
    // (RFC 7915 §5.2: the quoted packet translated back through the session).
    let delivered = &want[14..];
    let err = n::icmp(1, 4, [0; 4], delivered, Pseudo::V6(POD, client6(CLIENT)));
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, client6(CLIENT), n::ICMPV6, &err)),
    );
    let quoted = n::ipv4(
        &V4 {
            ttl: 63,
            ..V4::new(CLIENT, POOL)
        },
        n::UDP,
        &q,
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, CLIENT)
    };
    let want_err = e.to_uplink(&n::ipv4(
        &h,
        n::ICMP,
        &n::icmp(3, 3, [0; 4], &quoted, Pseudo::None),
    ));
    check(
        &out,
        verdict::REDIRECT,
        Some(&want_err),
        Reason::Nat64IcmpErrOut,
    );

    // The answer, and the pod's own datagram from port 53 to a server it never heard from:
    // both leave from POOL:5300 (endpoint-independent mapping through the static binding).
    for (peer, port) in [(CLIENT, 50000), (SRV, 5353)] {
        let peer6 = client6(peer);
        let a = n::udp(53, port, b"answer", Pseudo::V6(POD, peer6), false);
        let out = e.run(
            PROG_FROM_POD,
            &e.pod_frame(&n::ipv6(0, 0, 64, POD, peer6, n::UDP, &a)),
        );
        let h = V4 {
            id: v4_id(&out.pkt),
            ttl: 63,
            ..V4::new(POOL, peer)
        };
        let want = e.to_uplink(&n::ipv4(
            &h,
            n::UDP,
            &n::udp(5300, port, b"answer", Pseudo::V4(POOL, peer), false),
        ));
        check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);
    }
    // Another pod's port 53 is not bound: it gets a dynamic port.
    let t = e.udp_session(POD2, 53, 5353);
    assert!((61001..=61100).contains(&t), "dynamic port {t}");
}

#[test]
fn echo_requests_to_a_static_identifier_reach_the_pod() {
    let mut e = env(&static_cfg());
    let body = b"ping through a static binding";
    let ping = |id: u16| {
        n::ipv4(
            &V4::new(CLIENT, POOL),
            n::ICMP,
            &n::icmp(8, 0, n::echo_rest(id, 3), body, Pseudo::None),
        )
    };
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&ping(7)));
    let want = e.to_pod(&n::ipv6(
        0,
        0,
        63,
        client6(CLIENT),
        POD,
        n::ICMPV6,
        &n::icmp(
            128,
            0,
            n::echo_rest(9, 3),
            body,
            Pseudo::V6(client6(CLIENT), POD),
        ),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InStatic);

    // The pod's reply goes back with the static identifier.
    let pong = n::icmp(
        129,
        0,
        n::echo_rest(9, 3),
        body,
        Pseudo::V6(POD, client6(CLIENT)),
    );
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(0, 0, 64, POD, client6(CLIENT), n::ICMPV6, &pong)),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, CLIENT)
    };
    let want = e.to_uplink(&n::ipv4(
        &h,
        n::ICMP,
        &n::icmp(0, 0, n::echo_rest(7, 3), body, Pseudo::None),
    ));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64Out);

    // Other identifiers, static or dynamic range, are the node's to answer.
    for id in [8, free_port(&[])] {
        let input = e.uplink_frame(&ping(id));
        let out = e.run(PROG_FROM_UPLINK, &input);
        check(&out, verdict::NEXT, Some(&input), Reason::Pass);
    }
    // An echo reply to the static identifier without a session (the node's own ping) too.
    let reply = e.uplink_frame(&n::ipv4(
        &V4::new(OTHER_CLIENT, POOL),
        n::ICMP,
        &n::icmp(0, 0, n::echo_rest(7, 1), b"", Pseudo::None),
    ));
    let out = e.run(PROG_FROM_UPLINK, &reply);
    check(&out, verdict::NEXT, Some(&reply), Reason::Pass);
    // A pod's echo reply to a client that never pinged it is not translated.
    let stray = n::icmp(
        129,
        0,
        n::echo_rest(9, 1),
        b"",
        Pseudo::V6(POD, client6(OTHER_CLIENT)),
    );
    let out = e.run(
        PROG_FROM_POD,
        &e.pod_frame(&n::ipv6(
            0,
            0,
            64,
            POD,
            client6(OTHER_CLIENT),
            n::ICMPV6,
            &stray,
        )),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64NoSession);
    // Without a static ICMP binding an echo request is the node's whatever its identifier.
    let mut plain = env(&default_cfg());
    let input = plain.uplink_frame(&ping(7));
    let out = plain.run(PROG_FROM_UPLINK, &input);
    check(&out, verdict::NEXT, Some(&input), Reason::Pass);
}

/// Re-applying keeps unchanged bindings and their sessions; a binding removed or changed goes,
/// with its sessions, and its port is the node's again.
#[test]
fn reapplying_reconciles_the_entries_and_their_sessions() {
    let cfg = static_cfg();
    let mut e = env(&cfg);
    assert_eq!(statics::read(&e.layout).unwrap().len(), 6);
    let syn = client_tcp(&e, CLIENT, 8080, flags::SYN, &[]);
    let out = e.run(PROG_FROM_UPLINK, &syn);
    assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);

    let r = state::apply(&e.layout, &cfg).unwrap();
    assert_eq!((r.static_added, r.static_removed, r.static_kept), (0, 0, 3));
    assert_eq!(tcp_state(&e, CLIENT), Some(State::V4Init));

    // The TCP binding now points at another pod; the UDP one is gone.
    let mut moved = cfg.clone();
    moved.static_bindings = vec![
        binding(Protocol::Tcp, 8080, POD2, 80),
        binding(Protocol::Icmp, 7, POD, 9),
    ];
    let r = state::apply(&e.layout, &moved).unwrap();
    assert_eq!(
        (
            r.static_added,
            r.static_removed,
            r.static_kept,
            r.static_sessions_removed
        ),
        (1, 2, 1, 1)
    );
    assert_eq!(
        tcp_state(&e, CLIENT),
        None,
        "the old mapping's session went"
    );
    assert_eq!(statics::read(&e.layout).unwrap().len(), 4);
    let out = e.run(PROG_FROM_UPLINK, &syn);
    let seg = n::tcp(
        50000,
        80,
        7000,
        0,
        flags::SYN,
        &[],
        &[],
        Pseudo::V6(client6(CLIENT), POD2),
    );
    let want = e.to_pod(&n::ipv6(0, 0, 63, client6(CLIENT), POD2, n::TCP, &seg));
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64InStatic);
    let udp = e.uplink_frame(&n::ipv4(
        &V4::new(CLIENT, POOL),
        n::UDP,
        &n::udp(50000, 5300, b"q", Pseudo::V4(CLIENT, POOL), false),
    ));
    let out = e.run(PROG_FROM_UPLINK, &udp);
    check(&out, verdict::NEXT, Some(&udp), Reason::Pass);

    // NAT64 off: no static bindings left.
    state::apply(&e.layout, &Nat64Config::default()).unwrap();
    assert!(statics::read(&e.layout).unwrap().is_empty());
}
