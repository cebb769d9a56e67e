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
    nat64::{icmp, maps::DIR_OUT},
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

    /// A frame from the pod to the node.
    fn from_pod(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.pod_host_mac, self.node.pod_mac, n::ETH_P_IPV6, l3)
    }

    /// A frame from the IPv4 gateway to the node.
    fn from_uplink(&self, l3: &[u8]) -> Vec<u8> {
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
    let input = e.from_pod(&n::ipv6(0xb8, 0x12345, 64, POD, srv6(), n::UDP, &up));
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
        &e.from_uplink(&n::ipv4(&h, n::UDP, &down)),
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
    check(&out, verdict::REDIRECT, Some(&want), Reason::Nat64In);

    // Endpoint-independent mapping: the same pod port to another server keeps (T, t).
    let other = n::embed96(PREFIX, Ipv4Addr::new(198, 18, 1, 11));
    let up = n::udp(40000, 53, payload, Pseudo::V6(POD, other), false);
    let out = e.run(
        PROG_FROM_POD,
        &e.from_pod(&n::ipv6(0, 0, 64, POD, other, n::UDP, &up)),
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
        &e.from_pod(&n::ipv6(0, 0, 64, POD, srv6(), n::UDP, &up)),
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
