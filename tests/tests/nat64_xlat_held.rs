//! Unsolicited IPv4 SYNs (RFC 6146 §3.5.2.2) through `BPF_PROG_TEST_RUN`: under
//! `nat64.unsolicitedTcp: drop` dropped with nothing recorded; under `hold` recorded in
//! `SL_N64_HELD` and dropped, forgotten when the pod's SYN for the same tuple completes a
//! simultaneous open, answered by the agent after 6 s, and refused when the table is full.

use std::net::{Ipv4Addr, Ipv6Addr};

use sixlane_agent::nat64::{Nat64Config, UnsolicitedTcp, held, state};
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
    nat64::{
        maps::{DIR_OUT, HOLD_NS, HeldKey, HeldSyn, MAX_HELD_SYNS},
        tcp::State,
    },
};
use sixlane_testkit::fixture::verdict;
use sixlane_tests::nat64::{
    self as n, Pseudo, V4, flags,
    xlat::{Env, POD, POOL, PREFIX, check, default_cfg, env, free_port, pod_tcp, v4_id, v4_sport},
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 20);

fn cfg(policy: UnsolicitedTcp) -> Nat64Config {
    Nat64Config {
        unsolicited_tcp: policy,
        ..default_cfg()
    }
}

fn client6() -> Ipv6Addr {
    n::embed96(PREFIX, CLIENT)
}

/// The client's IPv4 packet: a TCP segment from CLIENT:`z` to POOL:`t`.
fn client_ip(z: u16, t: u16, fl: u8) -> Vec<u8> {
    let seg = n::tcp(z, t, 7000, 0, fl, &[], &[], Pseudo::V4(CLIENT, POOL));
    n::ipv4(&V4::new(CLIENT, POOL), n::TCP, &seg)
}

fn held(e: &Env) -> Vec<(HeldKey, HeldSyn)> {
    held::read(&e.layout).unwrap()
}

/// The TCP state of the pod's session with CLIENT:`z`.
fn tcp_state(e: &Env, z: u16) -> Option<State> {
    state::sessions(&e.layout)
        .unwrap()
        .into_iter()
        .find(|(k, _)| {
            k.dir == DIR_OUT
                && k.proto == n::TCP
                && k.remote == CLIENT.octets()
                && k.remote_port == z
        })
        .map(|(_, v)| State::from_u8(v.state))
}

#[test]
fn drop_policy_drops_unsolicited_syns_and_holds_nothing() {
    let mut e = env(&cfg(UnsolicitedTcp::Drop));
    let t = free_port(&[]);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&client_ip(40000, t, flags::SYN)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    assert!(held(&e).is_empty());
}

#[test]
fn hold_policy_records_and_drops_unsolicited_syns() {
    let mut e = env(&cfg(UnsolicitedTcp::Hold));
    let t = free_port(&[]);
    let ip = client_ip(40000, t, flags::SYN);
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&ip));
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);
    let h = held(&e);
    assert_eq!(h.len(), 1);
    let (k, v) = h[0];
    let want = HeldKey {
        t_addr: POOL.octets(),
        z: CLIENT.octets(),
        t_port: t,
        z_port: 40000,
    };
    assert_eq!(k, want);
    // What the ICMP error quotes: the IPv4 header and the first 8 bytes of TCP, as received.
    assert_eq!(&v.quote[..], &ip[..28]);
    assert_ne!(v.seen_ns, 0);

    // A retransmission is dropped the same way and keeps the first SYN's time.
    let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&ip));
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);
    assert_eq!(held(&e), vec![(k, v)]);

    // Segments that open nothing are not held: ACK, SYN-ACK, RST.
    for fl in [flags::ACK, flags::SYN | flags::ACK, flags::SYN | flags::RST] {
        let out = e.run(PROG_FROM_UPLINK, &e.uplink_frame(&client_ip(40001, t, fl)));
        check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    }
    // A SYN with IPv4 options would be quoted longer than the stored header: not held.
    let seg = n::tcp(
        40002,
        t,
        7000,
        0,
        flags::SYN,
        &[],
        &[],
        Pseudo::V4(CLIENT, POOL),
    );
    let h = V4 {
        options: &[1, 1, 1, 0],
        ..V4::new(CLIENT, POOL)
    };
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&n::ipv4(&h, n::TCP, &seg)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64Unsolicited);
    assert_eq!(held(&e).len(), 1);
}

#[test]
fn a_pod_syn_for_the_held_tuple_completes_a_simultaneous_open() {
    let mut e = env(&cfg(UnsolicitedTcp::Hold));
    // The pod's binding: POD:1000 → POOL:t, made by a connection elsewhere.
    let out = e.run(PROG_FROM_POD, &pod_tcp(&e, 1000, flags::SYN, &[], &[]));
    check(&out, verdict::REDIRECT, None, Reason::Nat64Out);
    let t = v4_sport(&out.pkt);

    // The client's SYN to that binding from port 40000: no session, held.
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&client_ip(40000, t, flags::SYN)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);

    // The pod's SYN to another port of the client leaves it held.
    let to = |e: &Env, z: u16| {
        let seg = n::tcp(
            1000,
            z,
            9000,
            0,
            flags::SYN,
            &[],
            &[],
            Pseudo::V6(POD, client6()),
        );
        e.pod_frame(&n::ipv6(0, 0, 64, POD, client6(), n::TCP, &seg))
    };
    let other = to(&e, 40001);
    let out = e.run(PROG_FROM_POD, &other);
    check(&out, verdict::REDIRECT, None, Reason::Nat64Out);
    assert_eq!(held(&e).len(), 1);

    // The pod's SYN to CLIENT:40000 crosses the client's: it leaves from POOL:t, counted as a
    // simultaneous open, and the held SYN is forgotten (never answered).
    let syn = to(&e, 40000);
    let out = e.run(PROG_FROM_POD, &syn);
    let seg = n::tcp(
        t,
        40000,
        9000,
        0,
        flags::SYN,
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
    check(
        &out,
        verdict::REDIRECT,
        Some(&want),
        Reason::Nat64SimultaneousOpen,
    );
    assert!(held(&e).is_empty());
    assert_eq!(tcp_state(&e, 40000), Some(State::V6Init));

    // The client answers the pod's SYN with its SYN-ACK: through the session, established.
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&client_ip(40000, t, flags::SYN | flags::ACK)),
    );
    check(&out, verdict::REDIRECT, None, Reason::Nat64InPeer);
    assert_eq!(tcp_state(&e, 40000), Some(State::Established));
    // A retransmitted SYN of the pod is an ordinary translation.
    let out = e.run(PROG_FROM_POD, &syn);
    check(&out, verdict::REDIRECT, None, Reason::Nat64Out);
}

#[test]
fn held_syns_are_answered_after_six_seconds_and_removed() {
    let mut e = env(&cfg(UnsolicitedTcp::Hold));
    let t = free_port(&[]);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&client_ip(40000, t, flags::SYN)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64SynHeld);
    let seen = held(&e)[0].1.seen_ns;
    let layout = &e.layout;
    let answer = |at| e.node.ns.enter(|| held::answer_at(layout, at)).unwrap();
    let r = answer(seen + HOLD_NS - 1);
    assert_eq!((r.waiting, r.answered + r.failed), (1, 0));
    assert_eq!(held(&e).len(), 1);
    let r = answer(seen + HOLD_NS);
    assert_eq!((r.waiting, r.answered + r.failed), (0, 1), "{r:?}");
    assert!(held(&e).is_empty());
}

#[test]
fn a_full_table_refuses_more_syns() {
    let mut e = env(&cfg(UnsolicitedTcp::Hold));
    let t = free_port(&[]);
    for z in 0..MAX_HELD_SYNS as u16 {
        let (v, _) = e.run_fast(
            PROG_FROM_UPLINK,
            &e.uplink_frame(&client_ip(20000 + z, t, flags::SYN)),
        );
        assert_eq!(v, verdict::SHOT);
    }
    assert_eq!(held(&e).len(), MAX_HELD_SYNS as usize);
    let out = e.run(
        PROG_FROM_UPLINK,
        &e.uplink_frame(&client_ip(10000, t, flags::SYN)),
    );
    check(&out, verdict::SHOT, None, Reason::Nat64SynHoldFull);
    assert_eq!(held(&e).len(), MAX_HELD_SYNS as usize);
}
