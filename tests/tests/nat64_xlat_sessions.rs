//! NAT64 sessions (RFC 6146) through `BPF_PROG_TEST_RUN`: TCP states and the MSS clamp, the
//! filtering mode, pool exhaustion, garbage collection of the pinned tables, and tables sized
//! for the pool.

use std::net::Ipv4Addr;

use sixlane_agent::{
    PinLayout,
    loader::Datapath,
    nat64::{Span, state},
};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
};
use sixlane_testkit::{PinDir, fixture::verdict};
use sixlane_tests::nat64::{
    self as n, Pseudo, V4, flags,
    xlat::{
        Env, Out, POD, POD2, POOL, PREFIX, SRV, check, default_cfg, env, free_port, pod_tcp,
        srv_tcp, srv6, v4_id, v4_sport,
    },
};

/// `ipv4Mtu` below the uplink's MTU bounds the MSS both ways, whatever route the pod used: the
/// pod's SYN and the server's SYN-ACK both leave the translator announcing 1400 − 40.
/// The pod's SYN (port 41000 → SRV:80) left translated with MSS `mss`; its IPv4 source port.
fn syn_out(e: &Env, out: &Out, mss: u16) -> u16 {
    let t = v4_sport(&out.pkt);
    let seg = n::tcp(
        t,
        80,
        1000,
        2000,
        flags::SYN,
        &n::mss_option(mss),
        &[],
        Pseudo::V4(POOL, SRV),
    );
    let h = V4 {
        id: v4_id(&out.pkt),
        ttl: 63,
        ..V4::new(POOL, SRV)
    };
    check(
        out,
        verdict::REDIRECT,
        Some(&e.to_uplink(&n::ipv4(&h, n::TCP, &seg))),
        Reason::Nat64Out,
    );
    t
}

/// The server's SYN-ACK reached the pod translated with MSS `mss`.
fn synack_in(e: &Env, out: &Out, mss: u16) {
    let seg = n::tcp(
        80,
        41000,
        5000,
        1001,
        flags::SYN | flags::ACK,
        &n::mss_option(mss),
        &[],
        Pseudo::V6(srv6(), POD),
    );
    check(
        out,
        verdict::REDIRECT,
        Some(&e.to_pod(&n::ipv6(0, 0, 63, srv6(), POD, n::TCP, &seg))),
        Reason::Nat64InPeer,
    );
}

#[test]
fn mss_clamped_both_ways_to_the_configured_ipv4_mtu() {
    let mut cfg = default_cfg();
    cfg.ipv4_mtu = 1400;
    let mut e = env(&cfg);
    let out = e.run(
        PROG_FROM_POD,
        &pod_tcp(&e, 41000, flags::SYN, &n::mss_option(1440), &[]),
    );
    let t = syn_out(&e, &out, 1360);
    let out = e.run(
        PROG_FROM_UPLINK,
        &srv_tcp(&e, t, flags::SYN | flags::ACK, &n::mss_option(1460)),
    );
    synack_in(&e, &out, 1360);
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
    let t = syn_out(&e, &out, 1460);
    assert_eq!(e.tcp_state(41000, 80), Some(State::V6Init as u8));

    // SYN-ACK with a large MSS: clamped for the pod's segments that will leave as IPv4.
    let out = e.run(
        PROG_FROM_UPLINK,
        &srv_tcp(&e, t, flags::SYN | flags::ACK, &n::mss_option(9000)),
    );
    synack_in(&e, &out, 1460);
    assert_eq!(e.tcp_state(41000, 80), Some(State::Established as u8));

    // A smaller MSS is left alone.
    let out = e.run(
        PROG_FROM_UPLINK,
        &srv_tcp(&e, t, flags::SYN | flags::ACK, &n::mss_option(1200)),
    );
    synack_in(&e, &out, 1200);

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

    // An IPv4 host cannot open TCP towards a pod: unsolicited, even to a live binding (dropped,
    // and held for a simultaneous open under the default `unsolicitedTcp: hold`).
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
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);
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
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);
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
