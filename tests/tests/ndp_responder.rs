//! The uplink's Neighbor Discovery responder over `BPF_PROG_TEST_RUN`: solicitations for owned
//! addresses answered with exact advertisements (RFC 4861 §7.2.4 flags and options), everything
//! else passed untouched, and every packet counted under exactly one reason (invalid ones by
//! the §7.1.1 rule they break). LoadBalancer IPs are answered only under the agent's lease.

use std::{cell::Cell, net::Ipv6Addr, rc::Rc, time::Duration};

use sixlane_agent::{
    PinLayout,
    ndp::{lease::Lease, table::Table},
};
use sixlane_common::{
    layout::PROG_FROM_UPLINK,
    metrics::{Direction, Reason},
    ndp::{Owned, kind},
};
use sixlane_testkit::{
    fixture::{self, Fixture, Output, verdict},
    ndp::{
        Advertisement, FLAG_OVERRIDE, FLAG_SOLICITED, OPT_SOURCE_LLA, Solicitation, multicast_mac,
    },
};
use sixlane_tests::{load_datapath, svc::counters};

/// The provider's router, on the uplink's link.
const R: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const R_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// A pod of this node and a LoadBalancer IP it announces, both in the link's /64.
const P: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xa, 1);
const LB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xb, 1);
/// Owned, but on another uplink.
const ELSEWHERE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xa, 2);
/// Nobody's.
const FREE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xf, 1);
const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];
/// `BPF_PROG_TEST_RUN` runs tc programs on the loopback device.
const TEST_IFINDEX: u32 = 1;

const NEXT: i32 = verdict::NEXT;
const REDIRECT: i32 = verdict::REDIRECT;

/// Programs the owned addresses through the agent's table writer.
fn own(layout: &PinLayout, addrs: &[(Ipv6Addr, u32, u8)]) {
    let want = addrs
        .iter()
        .map(|&(a, ifindex, kind)| {
            let o = Owned {
                ifindex,
                mac: UPLINK_MAC,
                kind,
                _pad: 0,
            };
            (a, o)
        })
        .collect();
    let mut t = Table::open(layout).expect("open the owned table");
    let c = t.sync(&want).expect("sync the owned table");
    assert_eq!(c.added.len(), addrs.len());
}

/// A fixture on the uplink's ingress that must land in exactly one counter, `reason`.
fn row(
    layout: &PinLayout,
    name: &str,
    input: Vec<u8>,
    v: i32,
    out: Output,
    reason: Reason,
) -> Fixture {
    let dir = Direction::Ingress;
    let before = Rc::new(Cell::new((0, 0)));
    let (b1, b2) = (before.clone(), before);
    let (l1, l2) = (layout.clone(), layout.clone());
    Fixture::new(name, PROG_FROM_UPLINK, input)
        .setup(move |_| {
            b1.set(counters(&l1, dir, reason));
            Ok(())
        })
        .verdict(v)
        .output(out)
        .check(move |_| {
            let (t0, r0) = b2.get();
            let (t1, r1) = counters(&l2, dir, reason);
            if (t1 - t0, r1 - r0) == (1, 1) {
                Ok(())
            } else {
                Err(format!(
                    "counted {} packet(s), {} under {}; want exactly one there",
                    t1 - t0,
                    r1 - r0,
                    reason.name()
                ))
            }
        })
}

/// The advertisement answering a solicitation from the router (`R`, `R_MAC`) for `target`.
fn answer(target: Ipv6Addr) -> Vec<u8> {
    Advertisement {
        dst_mac: R_MAC,
        src_mac: UPLINK_MAC,
        src: target,
        dst: R,
        hop_limit: 255,
        flags: FLAG_SOLICITED | FLAG_OVERRIDE,
        target,
        tlla: Some(UPLINK_MAC),
    }
    .frame()
}

fn ns(target: Ipv6Addr) -> Solicitation {
    Solicitation::multicast(R_MAC, R, target)
}

#[test]
fn solicitations_for_owned_addresses_are_answered_and_the_rest_passed() {
    let (_pins, layout, mut dp) = load_datapath();
    own(
        &layout,
        &[
            (P, TEST_IFINDEX, kind::POD),
            (LB, TEST_IFINDEX, kind::LB),
            (ELSEWHERE, TEST_IFINDEX + 1000, kind::POD),
        ],
    );
    // The agent's lease on the LoadBalancer IPs runs (long enough for any test machine).
    let mut lease = Lease::open(&layout).unwrap();
    lease.run_for(Duration::from_secs(600)).unwrap();
    let l = &layout;
    use Output::{Exact, Unchanged};
    use Reason::*;

    let mut no_slla = Solicitation::unicast(R_MAC, R, P, UPLINK_MAC);
    no_slla.options.clear();
    let dad_answer = Advertisement {
        dst_mac: multicast_mac("ff02::1".parse().unwrap()),
        dst: "ff02::1".parse().unwrap(),
        flags: FLAG_OVERRIDE,
        ..Advertisement::parse(&answer(P)).unwrap()
    }
    .frame();
    let table = vec![
        row(
            l,
            "multicast NS for a pod",
            ns(P).frame(),
            REDIRECT,
            Exact(answer(P)),
            NdpAnswered,
        ),
        row(
            l,
            "multicast NS for an LB IP",
            ns(LB).frame(),
            REDIRECT,
            Exact(answer(LB)),
            NdpAnswered,
        ),
        row(
            l,
            "unicast NUD probe for a pod",
            Solicitation::unicast(R_MAC, R, P, UPLINK_MAC).frame(),
            REDIRECT,
            Exact(answer(P)),
            NdpAnswered,
        ),
        row(
            l,
            "unicast NUD probe without a source link-layer address",
            no_slla.frame(),
            REDIRECT,
            Exact(answer(P)),
            NdpAnswered,
        ),
        row(
            l,
            "DAD probe (with a nonce) defended to all-nodes",
            Solicitation::dad(R_MAC, P).frame(),
            REDIRECT,
            Exact(dad_answer),
            NdpDadDefended,
        ),
        row(
            l,
            "NS for the router's own address",
            ns(R).frame(),
            NEXT,
            Unchanged,
            NdpNotOwned,
        ),
        row(
            l,
            "NS for a free address",
            ns(FREE).frame(),
            NEXT,
            Unchanged,
            NdpNotOwned,
        ),
        row(
            l,
            "NS for an address owned on another uplink",
            ns(ELSEWHERE).frame(),
            NEXT,
            Unchanged,
            NdpNotOwned,
        ),
        row(
            l,
            "an advertisement is not the responder's",
            answer(R),
            NEXT,
            Unchanged,
            Pass,
        ),
    ];
    fixture::run(dp.ebpf_mut(), table);
}

#[test]
fn load_balancer_ips_lapse_with_the_lease_and_pods_do_not() {
    let (_pins, layout, mut dp) = load_datapath();
    own(
        &layout,
        &[(P, TEST_IFINDEX, kind::POD), (LB, TEST_IFINDEX, kind::LB)],
    );
    let l = &layout;
    use Reason::*;
    // A fresh datapath: no lease yet, as after an agent that never renewed it.
    let lapsed = |name: &str| row(l, name, ns(LB).frame(), NEXT, Output::Unchanged, NdpLapsed);
    let pod = || {
        row(
            l,
            "a pod is answered whatever the lease",
            ns(P).frame(),
            REDIRECT,
            Output::Exact(answer(P)),
            NdpAnswered,
        )
    };
    fixture::run(dp.ebpf_mut(), vec![lapsed("no lease yet"), pod()]);
    let mut lease = Lease::open(&layout).unwrap();
    lease.run_for(Duration::from_secs(600)).unwrap();
    let answered = row(
        l,
        "lease running",
        ns(LB).frame(),
        REDIRECT,
        Output::Exact(answer(LB)),
        NdpAnswered,
    );
    fixture::run(dp.ebpf_mut(), vec![answered]);
    lease.end().unwrap();
    fixture::run(dp.ebpf_mut(), vec![lapsed("lease ended"), pod()]);
}

#[test]
fn invalid_solicitations_are_never_answered_and_counted_by_reason() {
    let (_pins, layout, mut dp) = load_datapath();
    own(&layout, &[(P, TEST_IFINDEX, kind::POD)]);
    let l = &layout;
    use Reason::*;
    let bad = |name: &str, s: Solicitation, reason: Reason| {
        row(l, name, s.frame(), NEXT, Output::Unchanged, reason)
    };

    let mut routed = ns(P);
    routed.hop_limit = 254;
    let mut code = ns(P);
    code.code = 1;
    let mut csum = ns(P);
    csum.checksum_delta = 1;
    let mut mcast = ns("ff02::1".parse().unwrap());
    mcast.dst = "ff02::1:ff00:1".parse().unwrap();
    let mut zero_opt = ns(P);
    zero_opt.raw_options = vec![OPT_SOURCE_LLA, 0, 0, 0, 0, 0, 0, 0];
    let mut long_opt = ns(P);
    long_opt.raw_options = vec![OPT_SOURCE_LLA, 2, 0, 0, 0, 0, 0, 0];
    let mut half_opt = ns(P);
    half_opt.raw_options = vec![OPT_SOURCE_LLA];
    let mut dad_slla = Solicitation::dad(R_MAC, P);
    dad_slla.options.push((OPT_SOURCE_LLA, R_MAC.to_vec()));
    let mut dad_unicast = Solicitation::dad(R_MAC, P);
    dad_unicast.dst = P;
    dad_unicast.dst_mac = UPLINK_MAC;

    // 16 bytes of message: type, code, checksum, reserved and half a target.
    let mut short = ns(P).frame();
    short.truncate(14 + 40 + 16);
    short[18..20].copy_from_slice(&16u16.to_be_bytes());

    let table = vec![
        bad(
            "hop limit 254 (routed, not on-link)",
            routed,
            NdpBadHopLimit,
        ),
        bad("ICMPv6 code 1", code, NdpBadCode),
        bad("wrong checksum", csum, NdpBadChecksum),
        bad("multicast target", mcast, NdpMulticastTarget),
        bad("option of length 0", zero_opt, NdpBadOption),
        bad("option running past the end", long_opt, NdpBadOption),
        bad("option header cut short", half_opt, NdpBadOption),
        bad(
            "DAD probe with a source link-layer address",
            dad_slla,
            NdpDadSourceLla,
        ),
        bad(
            "DAD probe to a unicast destination",
            dad_unicast,
            NdpDadNotSolicitedNode,
        ),
        row(
            l,
            "16-byte solicitation",
            short,
            NEXT,
            Output::Unchanged,
            NdpTooShort,
        ),
    ];
    fixture::run(dp.ebpf_mut(), table);
}
