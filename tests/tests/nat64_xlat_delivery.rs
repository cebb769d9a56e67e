//! Where translated packets go (through `BPF_PROG_TEST_RUN`): the route's MTU answers with
//! Packet Too Big both ways, replies go straight into the pod that opened the session through
//! the veth it sent from, and outbound routes are reused briefly but never for larger packets.

use sixlane_agent::nat64::state;
use sixlane_common::{
    layout::{PROG_FROM_POD, PROG_FROM_UPLINK},
    metrics::Reason,
};
use sixlane_testkit::fixture::verdict;
use sixlane_tests::nat64::{
    self as n, Pseudo, V4,
    xlat::{Env, Out, POD, POOL, PREFIX, SRV, check, default_cfg, env, srv6, v4_id, v4_sport},
};

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
