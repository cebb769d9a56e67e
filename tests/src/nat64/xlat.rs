//! The NAT64 translator under `BPF_PROG_TEST_RUN` for the `nat64_xlat_*` tests: a datapath
//! loaded into fresh pins and configured ([`env`]), a namespace whose routes and static
//! neighbours make the datapath's FIB lookups resolve ([`XlatNode`]; nothing is ever
//! transmitted), packets run through a program with the counters they moved ([`Env::run`]),
//! and the byte-for-byte comparison every test uses ([`check`]).

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
    layout::PROG_FROM_POD,
    metrics::{Direction, Reason},
    nat64::maps::DIR_OUT,
};
use sixlane_testkit::{
    PinDir,
    fixture::{self, SkBuffCtx, verdict},
    packet,
};

use super::{self as n, Pseudo, V4, XlatNode};
use crate::load_datapath;

/// The translator's prefix, its pods (in `fd00:10::/64`), a source outside the pod CIDRs, the
/// pool address, an IPv4 server and a router on the IPv4 side.
pub const PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6464, 0, 0, 0, 0, 0, 0);
pub const POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xa);
pub const POD2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xb);
pub const STRANGER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
pub const POOL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SRV: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

/// The server as the pods address it: embedded in [`PREFIX`].
pub fn srv6() -> Ipv6Addr {
    n::embed96(PREFIX, SRV)
}

/// A loaded and configured translator on its node.
pub struct Env {
    pub node: XlatNode,
    pub layout: PinLayout,
    pub dp: Datapath,
    _pins: PinDir,
}

/// Loads the datapath into fresh pins, applies `cfg` and builds the node for [`POD`], [`POD2`].
pub fn env(cfg: &Nat64Config) -> Env {
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

/// [`PREFIX`]/96, the pool, the pods' /64 and ports 61001–61100.
pub fn default_cfg() -> Nat64Config {
    n::config(
        "fd00:6464::/96",
        &[POOL],
        &["fd00:10::/64"],
        Span::new(61001, 61100),
    )
}

/// A port (or echo identifier) of `default_cfg`'s range that none of `taken` uses: bindings
/// land anywhere in the range (keyed hash), so "no session here" needs a port known to be free.
pub fn free_port(taken: &[u16]) -> u16 {
    (61001..=61100)
        .rev()
        .find(|p| !taken.contains(p))
        .expect("a free port")
}

/// One packet through a program, in the node's namespace.
pub struct Out {
    pub verdict: i32,
    pub pkt: Vec<u8>,
    /// Counter deltas by reason name.
    pub counted: BTreeMap<&'static str, u64>,
}

impl Env {
    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        metrics::read(&self.layout)
            .unwrap()
            .into_iter()
            .filter(|r| r.direction == Direction::Ingress.name())
            .map(|r| (r.reason, r.packets))
            .collect()
    }

    pub fn run(&mut self, prog: &str, input: &[u8]) -> Out {
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
    pub fn run_fast(&mut self, prog: &str, input: &[u8]) -> (i32, Vec<u8>) {
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
    pub fn udp_session(&mut self, pod: Ipv6Addr, x: u16, port: u16) -> u16 {
        let up = n::udp(x, port, b"open", Pseudo::V6(pod, srv6()), false);
        let out = self.run(
            PROG_FROM_POD,
            &self.pod_frame(&n::ipv6(0, 0, 64, pod, srv6(), n::UDP, &up)),
        );
        assert_eq!(out.verdict, verdict::REDIRECT, "{:?}", out.counted);
        v4_sport(&out.pkt)
    }

    /// The TCP state of session POD:`x` → SRV:`port` (from the pinned map).
    pub fn tcp_state(&self, x: u16, port: u16) -> Option<u8> {
        state::sessions(&self.layout)
            .unwrap()
            .into_iter()
            .find(|(k, _)| {
                k.dir == DIR_OUT && k.proto == n::TCP && k.port == x && k.remote_port == port
            })
            .map(|(_, v)| v.state)
    }

    /// A frame from the pod to the node.
    pub fn pod_frame(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.pod_host_mac, self.node.pod_mac, n::ETH_P_IPV6, l3)
    }

    /// A frame from the IPv4 gateway to the node.
    pub fn uplink_frame(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.uplink_mac, self.node.gw_mac, n::ETH_P_IP, l3)
    }

    /// What the node sends towards the IPv4 gateway.
    pub fn to_uplink(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.gw_mac, self.node.uplink_mac, n::ETH_P_IP, l3)
    }

    /// What the node sends to the pod.
    pub fn to_pod(&self, l3: &[u8]) -> Vec<u8> {
        n::eth(self.node.pod_mac, self.node.pod_host_mac, n::ETH_P_IPV6, l3)
    }
}

/// Asserts `out` is `want` byte for byte (after `patch`), with valid checksums, and that exactly
/// one counter moved, the given one.
#[track_caller]
pub fn check(out: &Out, verdict_want: i32, want: Option<&[u8]>, reason: Reason) {
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
pub fn v4_id(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[18], p[19]])
}

pub fn v4_sport(p: &[u8]) -> u16 {
    let ihl = usize::from(p[14] & 0x0f) * 4;
    u16::from_be_bytes([p[14 + ihl], p[15 + ihl]])
}

pub fn v4_echo_id(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[14 + 20 + 4], p[14 + 20 + 5]])
}

/// A TCP segment from the pod, as a frame.
pub fn pod_tcp(e: &Env, x: u16, fl: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
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
pub fn srv_tcp(e: &Env, t: u16, fl: u8, opts: &[u8]) -> Vec<u8> {
    let seg = n::tcp(80, t, 5000, 1001, fl, opts, &[], Pseudo::V4(SRV, POOL));
    e.uplink_frame(&n::ipv4(&V4::new(SRV, POOL), n::TCP, &seg))
}
