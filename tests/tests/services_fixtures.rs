//! The service datapath over `BPF_PROG_TEST_RUN`: every path with exact output packets
//! (checksums verified independently by the testkit), the counter each packet lands in, and
//! the conntrack state it leaves.
//!
//! The maps are programmed through the real `Programmer` from a typed `DesiredState`; rows of
//! a table build on each other (a SYN creates the flow its SYN-ACK then matches).

use std::{cell::Cell, net::Ipv6Addr, rc::Rc, time::Duration};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData},
};
use sixlane_agent::{
    PinLayout,
    model::{DesiredState, NodeState, Protocol, TrafficPolicy},
    services::Programmer,
};
use sixlane_common::{
    layout::{
        MAP_CT, MAP_SVC_CONFIG, PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_POD, PROG_TO_UPLINK,
    },
    metrics::{Direction, Reason},
    services::{Config, CtEntry, CtKey, config_flags, ct_flags, ct_state},
};
use sixlane_testkit::{
    fixture::{self, Fixture, Output, SkBuffCtx, verdict},
    packet::{self, IPV6_HLEN, TcpFlags},
};
use sixlane_tests::{
    load_datapath,
    svc::{
        PodsNode, assert_checksums, backend, counters, echo_reply, icmp6, into_pod, ip_part,
        port_of, service, swap_macs, v6,
    },
};

const C: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xc);
const C2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xc2);
const L: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xd);
const B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0xb);
const R: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0xe);
const VIP1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 1);
const VIP2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 2);
const VIP5: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 5);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 6);
const VIP7: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 7);
const N: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
const E: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x100);
const X: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x99);
const SNAT_PORT: u16 = 61000;

fn ip(a: Ipv6Addr) -> std::net::IpAddr {
    a.into()
}

fn tcp(s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16, f: TcpFlags, payload: &[u8]) -> Vec<u8> {
    packet::tcp(ip(s), sp, ip(d), dp, f, payload)
}

/// `frame` (Ethernet, IPv6, TCP) as a sender with checksum offload hands it over: the TCP
/// checksum field holds the pseudo-header sum only.
fn with_partial_tcp_checksum(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let l4 = 14 + IPV6_HLEN;
    let sum = packet::checksum::pseudo_v6(&f[22..38], &f[38..54], (f.len() - l4) as u32, 6);
    f[l4 + 16..l4 + 18].copy_from_slice(&packet::checksum::fold(sum).to_be_bytes());
    f
}

fn udp(s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16, payload: &[u8]) -> Vec<u8> {
    packet::udp(ip(s), sp, ip(d), dp, payload)
}

/// The node this table runs on: pods C, C2 and L are local; B and R live elsewhere.
fn desired() -> DesiredState {
    let mut web = service("web", VIP1, 80, vec![backend(B, 8080, false)]);
    web.ports.push(port_of(
        "dns",
        Protocol::Udp,
        53,
        vec![backend(B, 5353, false)],
    ));
    let hair = service("hair", VIP2, 80, vec![backend(C, 8080, true)]);
    let empty = service("empty", VIP5, 80, vec![]);
    let mut aff = service(
        "aff",
        VIP6,
        80,
        (1..=4)
            .map(|i| backend(v6(&format!("fd00:20::{i}")), 8080, false))
            .collect(),
    );
    aff.session_affinity = Some(Duration::from_secs(60));
    let mut itp = service("itp", VIP7, 80, vec![backend(B, 8080, false)]);
    itp.internal_traffic_policy = TrafficPolicy::Local;
    let mut np = service("np", v6("fd00:96::10"), 80, vec![backend(R, 8080, false)]);
    np.ports[0].node_port = Some(30080);
    let mut npl = service(
        "npl",
        v6("fd00:96::11"),
        80,
        vec![backend(L, 8080, true), backend(R, 8080, false)],
    );
    npl.ports[0].node_port = Some(30081);
    npl.external_traffic_policy = TrafficPolicy::Local;
    DesiredState {
        node: NodeState {
            name: "n1".into(),
            addresses: vec![N],
            cluster_ips_from_outside: false,
        },
        services: [web, hair, empty, aff, itp, np, npl]
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect(),
    }
}

/// Loads the datapath and programs `desired()`; SNAT ports are pinned to one value so SNAT
/// output is exact.
fn setup() -> (
    sixlane_testkit::PinDir,
    PinLayout,
    sixlane_agent::loader::Datapath,
) {
    setup_with(vec![])
}

/// [`setup`] with `extra` services besides `desired()`'s.
fn setup_with(
    extra: Vec<sixlane_agent::model::Service>,
) -> (
    sixlane_testkit::PinDir,
    PinLayout,
    sixlane_agent::loader::Datapath,
) {
    let (pins, layout, mut dp) = load_datapath();
    let mut p = Programmer::open(&layout).expect("open service maps");
    let mut d = desired();
    d.services
        .extend(extra.into_iter().map(|s| (s.id.clone(), s)));
    p.apply(&d).expect("apply");
    let mut cfg: Array<&mut MapData, Config> =
        Array::try_from(dp.ebpf_mut().map_mut(MAP_SVC_CONFIG).unwrap()).unwrap();
    let mut c = cfg.get(&0, 0).unwrap();
    c.snat_port_min = SNAT_PORT;
    c.snat_port_max = SNAT_PORT;
    cfg.set(0, c, 0).unwrap();
    (pins, layout, dp)
}

/// A fixture that must also land in exactly one counter, (dir, reason).
fn row(
    layout: &PinLayout,
    name: &str,
    prog: &str,
    input: Vec<u8>,
    v: i32,
    out: Output,
    reason: Reason,
) -> Fixture {
    let dir = match prog {
        PROG_FROM_POD | PROG_FROM_UPLINK => Direction::Ingress,
        _ => Direction::Egress,
    };
    let before = Rc::new(Cell::new((0, 0)));
    let (b1, b2) = (before.clone(), before);
    let (l1, l2) = (layout.clone(), layout.clone());
    Fixture::new(name, prog, input)
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
                    "counted {} packet(s), {} under {}/{}; want exactly one there",
                    t1 - t0,
                    r1 - r0,
                    dir.name(),
                    reason.name()
                ))
            }
        })
}

fn ct_entry(ebpf: &mut Ebpf, key: &CtKey) -> Option<CtEntry> {
    let m: BpfHashMap<&mut MapData, CtKey, CtEntry> =
        BpfHashMap::try_from(ebpf.map_mut(MAP_CT).unwrap()).unwrap();
    m.get(key, 0).ok()
}

fn key(s: Ipv6Addr, sp: u16, d: Ipv6Addr, dp: u16, proto: u8) -> CtKey {
    CtKey {
        src: s.octets(),
        dst: d.octets(),
        sport: sp.to_be(),
        dport: dp.to_be(),
        proto,
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    sixlane_agent::services::conntrack::now_ns()
}

/// Check: the entry for `k` exists with `state` bits set and lives `secs` (±2 s) from now.
fn ct_state_is(k: CtKey, state: u8, secs: u64) -> impl Fn(&mut Ebpf) -> Result<(), String> {
    move |ebpf| {
        let e = ct_entry(ebpf, &k).ok_or("no conntrack entry")?;
        if e.state & state != state {
            return Err(format!("state {:#x} lacks {state:#x}", e.state));
        }
        let left = e.expires_ns.saturating_sub(now_ns()) / 1_000_000_000;
        if left + 2 < secs || left > secs + 2 {
            return Err(format!("lives {left} s more, want {secs}"));
        }
        Ok(())
    }
}

const SYN: TcpFlags = TcpFlags::SYN;
const SA: TcpFlags = TcpFlags::SYN_ACK;
const ACK: TcpFlags = TcpFlags::ACK;
const PA: TcpFlags = TcpFlags::PSH_ACK;
const FA: TcpFlags = TcpFlags::FIN_ACK;
const RST: TcpFlags = TcpFlags::RST;
const NEXT: i32 = verdict::NEXT;
const REDIRECT: i32 = verdict::REDIRECT;

#[test]
fn clusterip_tcp_lifecycle_udp_and_not_ours() {
    let (_pins, layout, mut dp) = setup();
    let l = &layout;
    use Output::{Exact, Unchanged};
    use Reason::*;
    let fwd = key(C, 40000, VIP1, 80, 6);
    let rev = key(B, 8080, C, 40000, 6);
    let table = vec![
        row(
            l,
            "SYN to the ClusterIP is DNATed",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 80, SYN, b""),
            NEXT,
            Exact(tcp(C, 40000, B, 8080, SYN, b"")),
            SvcNew,
        )
        .check(ct_state_is(fwd, ct_state::SYN, 60))
        .check(ct_state_is(rev, ct_state::SYN, 60)),
        row(
            l,
            "the DNATed SYN passes the backend's to-pod hook untouched",
            PROG_TO_POD,
            tcp(C, 40000, B, 8080, SYN, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "the SYN-ACK passes the backend's from-pod hook untouched",
            PROG_FROM_POD,
            tcp(B, 8080, C, 40000, SA, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "the SYN-ACK comes back from the ClusterIP",
            PROG_TO_POD,
            tcp(B, 8080, C, 40000, SA, b""),
            NEXT,
            Exact(tcp(VIP1, 80, C, 40000, SA, b"")),
            SvcReverse,
        ),
        row(
            l,
            "the client's ACK establishes the flow",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 80, ACK, b""),
            NEXT,
            Exact(tcp(C, 40000, B, 8080, ACK, b"")),
            SvcForward,
        )
        .check(ct_state_is(fwd, ct_state::ESTABLISHED, 6 * 3600))
        .check(ct_state_is(rev, ct_state::ESTABLISHED, 6 * 3600)),
        row(
            l,
            "request data",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 80, PA, b"GET / HTTP/1.0\r\n\r\n"),
            NEXT,
            Exact(tcp(C, 40000, B, 8080, PA, b"GET / HTTP/1.0\r\n\r\n")),
            SvcForward,
        ),
        row(
            l,
            "odd-length response data",
            PROG_TO_POD,
            tcp(B, 8080, C, 40000, PA, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            NEXT,
            Exact(tcp(VIP1, 80, C, 40000, PA, b"HTTP/1.0 200 OK\r\n\r\nhello")),
            SvcReverse,
        ),
        row(
            l,
            "client FIN",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 80, FA, b""),
            NEXT,
            Exact(tcp(C, 40000, B, 8080, FA, b"")),
            SvcForward,
        )
        .check(ct_state_is(
            fwd,
            ct_state::FIN_FORWARD | ct_state::ESTABLISHED,
            6 * 3600,
        )),
        row(
            l,
            "server FIN: closing",
            PROG_TO_POD,
            tcp(B, 8080, C, 40000, FA, b""),
            NEXT,
            Exact(tcp(VIP1, 80, C, 40000, FA, b"")),
            SvcReverse,
        )
        .check(ct_state_is(
            fwd,
            ct_state::FIN_FORWARD | ct_state::FIN_REPLY,
            10,
        ))
        .check(ct_state_is(
            rev,
            ct_state::FIN_FORWARD | ct_state::FIN_REPLY,
            10,
        )),
        row(
            l,
            "last ACK",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 80, ACK, b""),
            NEXT,
            Exact(tcp(C, 40000, B, 8080, ACK, b"")),
            SvcForward,
        ),
        row(
            l,
            "a SYN reusing the closed tuple is a new flow",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 80, SYN, b""),
            NEXT,
            Exact(tcp(C, 40000, B, 8080, SYN, b"")),
            SvcNew,
        )
        .check(ct_state_is(fwd, ct_state::SYN, 60)),
        row(
            l,
            "a second client's SYN",
            PROG_FROM_POD,
            tcp(C2, 41000, VIP1, 80, SYN, b""),
            NEXT,
            Exact(tcp(C2, 41000, B, 8080, SYN, b"")),
            SvcNew,
        ),
        row(
            l,
            "RST from the server closes it",
            PROG_TO_POD,
            tcp(B, 8080, C2, 41000, RST, b""),
            NEXT,
            Exact(tcp(VIP1, 80, C2, 41000, RST, b"")),
            SvcReverse,
        )
        .check(ct_state_is(key(C2, 41000, VIP1, 80, 6), ct_state::RST, 10)),
        row(
            l,
            "UDP to the ClusterIP's DNS port",
            PROG_FROM_POD,
            udp(C, 5000, VIP1, 53, b"query"),
            NEXT,
            Exact(udp(C, 5000, B, 5353, b"query")),
            SvcNew,
        )
        .check(ct_state_is(key(C, 5000, VIP1, 53, 17), 0, 60)),
        row(
            l,
            "the UDP answer",
            PROG_TO_POD,
            udp(B, 5353, C, 5000, b"answer!"),
            NEXT,
            Exact(udp(VIP1, 53, C, 5000, b"answer!")),
            SvcReverse,
        )
        .check(ct_state_is(
            key(C, 5000, VIP1, 53, 17),
            ct_state::SEEN_REPLY,
            60,
        )),
        row(
            l,
            "a port the service does not have is not ours",
            PROG_FROM_POD,
            tcp(C, 40000, VIP1, 81, SYN, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "pod to pod is not ours",
            PROG_FROM_POD,
            tcp(C, 40000, L, 80, SYN, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "a reply to nobody is not ours",
            PROG_TO_POD,
            tcp(B, 8080, C, 40999, SA, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "IPv4 passes from-pod",
            PROG_FROM_POD,
            packet::tcp(v4(), 1, v4b(), 80, SYN, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "IPv4 passes from-uplink",
            PROG_FROM_UPLINK,
            packet::udp(v4(), 1, v4b(), 53, b"x"),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "IPv4 passes to-pod",
            PROG_TO_POD,
            packet::udp(v4(), 1, v4b(), 53, b"x"),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "IPv4 passes to-uplink",
            PROG_TO_UPLINK,
            packet::udp(v4(), 1, v4b(), 53, b"x"),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "ClusterIP traffic from the uplink is not a frontend there",
            PROG_FROM_UPLINK,
            tcp(E, 40000, VIP1, 80, SYN, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
    ];
    fixture::run(dp.ebpf_mut(), table);
}

fn v4() -> std::net::IpAddr {
    "198.18.0.1".parse().unwrap()
}

fn v4b() -> std::net::IpAddr {
    "198.18.0.2".parse().unwrap()
}

#[test]
fn hairpin_echo_no_backend_and_local_policy() {
    let (_pins, layout, mut dp) = setup();
    let l = &layout;
    use Output::Exact;
    use Reason::*;
    let syn5 = tcp(C, 40002, VIP5, 80, SYN, b"");
    let unreachable = swap_macs(icmp6(VIP5, C, 1, 4, [0; 4], ip_part(&syn5)));
    let big = tcp(C, 40005, VIP5, 80, PA, &[0x5a; 1400]);
    // A 1400-byte segment is quoted only up to the IPv6 minimum MTU.
    let big_unreachable = swap_macs(icmp6(VIP5, C, 1, 4, [0; 4], &ip_part(&big)[..1232]));
    // Checksum offload pending (CHECKSUM_PARTIAL): the pod's stack left only the pseudo-header
    // sum in the field. The quote must carry the full checksum, the one `syn6` has.
    let syn6 = tcp(C, 40006, VIP5, 80, SYN, b"");
    let partial = with_partial_tcp_checksum(&syn6);
    let partial_unreachable = swap_macs(icmp6(VIP5, C, 1, 4, [0; 4], ip_part(&syn6)));
    let table = vec![
        row(
            l,
            "hairpin: the pod reaches itself through its service",
            PROG_FROM_POD,
            tcp(C, 40001, VIP2, 80, SYN, b""),
            REDIRECT,
            Exact(swap_macs(tcp(VIP2, 40001, C, 8080, SYN, b""))),
            SvcHairpin,
        )
        .check(|e| {
            let f = ct_entry(e, &key(C, 40001, VIP2, 80, 6)).ok_or("no entry")?;
            let want = ct_flags::HAIRPIN | ct_flags::SNAT | ct_flags::REDIRECT_BACK;
            (f.flags & want == want)
                .then_some(())
                .ok_or(format!("flags {:#x}", f.flags))
        }),
        row(
            l,
            "hairpin reply goes straight back",
            PROG_FROM_POD,
            tcp(C, 8080, VIP2, 40001, SA, b""),
            REDIRECT,
            Exact(swap_macs(tcp(VIP2, 80, C, 40001, SA, b""))),
            SvcHairpin,
        ),
        row(
            l,
            "hairpin ACK",
            PROG_FROM_POD,
            tcp(C, 40001, VIP2, 80, ACK, b""),
            REDIRECT,
            Exact(swap_macs(tcp(VIP2, 40001, C, 8080, ACK, b""))),
            SvcHairpin,
        ),
        row(
            l,
            "no endpoint: port unreachable from the ClusterIP",
            PROG_FROM_POD,
            syn5,
            REDIRECT,
            Exact(unreachable),
            SvcNoBackend,
        ),
        row(
            l,
            "no endpoint, offloaded checksum: the quote carries the full one",
            PROG_FROM_POD,
            partial,
            REDIRECT,
            Exact(partial_unreachable),
            SvcNoBackend,
        ),
        row(
            l,
            "no endpoint, big segment: the quote stops at the minimum MTU",
            PROG_FROM_POD,
            big,
            REDIRECT,
            Exact(big_unreachable),
            SvcNoBackend,
        ),
        row(
            l,
            "internalTrafficPolicy Local without a local endpoint drops",
            PROG_FROM_POD,
            tcp(C, 40003, VIP7, 80, SYN, b""),
            verdict::SHOT,
            Output::Ignore,
            SvcNoLocalBackend,
        ),
        row(
            l,
            "ping a ClusterIP",
            PROG_FROM_POD,
            packet::icmp6_echo(C, VIP1, 7, 1, b"ping!"),
            REDIRECT,
            Exact(echo_reply(VIP1, C, 7, 1, b"ping!")),
            SvcEchoReply,
        ),
        row(
            l,
            "ping a service without endpoints answers too",
            PROG_FROM_POD,
            packet::icmp6_echo(C, VIP5, 7, 2, b""),
            REDIRECT,
            Exact(echo_reply(VIP5, C, 7, 2, b"")),
            SvcEchoReply,
        ),
        row(
            l,
            "ping a pod is not ours",
            PROG_FROM_POD,
            packet::icmp6_echo(C, L, 7, 3, b"x"),
            NEXT,
            Output::Unchanged,
            Pass,
        ),
    ];
    fixture::run(dp.ebpf_mut(), table);
}

#[test]
fn nodeport_snat_and_local_policy() {
    let (_pins, layout, mut dp) = setup();
    let l = &layout;
    use Output::{Exact, Unchanged};
    use Reason::*;
    let table = vec![
        row(
            l,
            "NodePort, Cluster policy, remote backend: DNAT + SNAT to the node",
            PROG_FROM_UPLINK,
            tcp(E, 50000, N, 30080, SYN, b""),
            NEXT,
            Exact(tcp(N, SNAT_PORT, R, 8080, SYN, b"")),
            SvcNew,
        ),
        row(
            l,
            "the SNATed flow's reply is reversed on the uplink",
            PROG_FROM_UPLINK,
            tcp(R, 8080, N, SNAT_PORT, SA, b""),
            NEXT,
            Exact(tcp(N, 30080, E, 50000, SA, b"")),
            SvcReverse,
        ),
        row(
            l,
            "client ACK",
            PROG_FROM_UPLINK,
            tcp(E, 50000, N, 30080, ACK, b"x"),
            NEXT,
            Exact(tcp(N, SNAT_PORT, R, 8080, ACK, b"x")),
            SvcForward,
        ),
        row(
            l,
            "the reversed reply leaves untouched",
            PROG_TO_UPLINK,
            tcp(N, 30080, E, 50000, SA, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "a second client while the only SNAT port is taken: exhausted",
            PROG_FROM_UPLINK,
            tcp(X, 50000, N, 30080, SYN, b""),
            verdict::SHOT,
            Output::Ignore,
            SvcSnatExhausted,
        ),
        row(
            l,
            "NodePort, Local policy: local backend, client address kept",
            PROG_FROM_UPLINK,
            tcp(E, 50001, N, 30081, SYN, b""),
            NEXT,
            Exact(tcp(E, 50001, L, 8080, SYN, b"")),
            SvcNew,
        ),
        row(
            l,
            "its reply passes the backend's from-pod hook",
            PROG_FROM_POD,
            tcp(L, 8080, E, 50001, SA, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "and is reversed on the way out of the uplink",
            PROG_TO_UPLINK,
            tcp(L, 8080, E, 50001, SA, b""),
            NEXT,
            Exact(tcp(N, 30081, E, 50001, SA, b"")),
            SvcReverse,
        ),
        row(
            l,
            "a pod on this node uses the NodePort without SNAT",
            PROG_FROM_POD,
            tcp(C, 40010, N, 30080, SYN, b""),
            NEXT,
            Exact(tcp(C, 40010, R, 8080, SYN, b"")),
            SvcNew,
        ),
        row(
            l,
            "and gets the reply from the node address",
            PROG_TO_POD,
            tcp(R, 8080, C, 40010, SA, b""),
            NEXT,
            Exact(tcp(N, 30080, C, 40010, SA, b"")),
            SvcReverse,
        ),
        row(
            l,
            "a NodePort on another address is not ours",
            PROG_FROM_UPLINK,
            tcp(E, 50002, X, 30080, SYN, b""),
            NEXT,
            Unchanged,
            Pass,
        ),
    ];
    fixture::run(dp.ebpf_mut(), table);
}

/// ICMPv6 errors about translated flows: the outer packet and the quote, checksums included.
#[test]
fn icmp_errors_are_translated_inner_header_included() {
    let (_pins, layout, mut dp) = setup();
    let l = &layout;
    use Output::{Exact, Unchanged};
    use Reason::*;
    let data = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // A pod flow to the ClusterIP, and NodePort flows with and without SNAT.
    let mtu = 1280u32.to_be_bytes();
    let fwd_seg = tcp(C, 40020, B, 8080, PA, data);
    let seen_seg = tcp(C, 40020, VIP1, 80, PA, data);
    let snat_seg = tcp(N, SNAT_PORT, R, 8080, PA, data);
    let ext_seg = tcp(E, 50000, N, 30080, PA, data);
    let reply_seg = tcp(N, 30081, E, 50001, PA, data);
    let backend_view = tcp(L, 8080, E, 50001, PA, data);
    let udp_fwd = udp(C, 5020, B, 5353, b"q");
    let udp_seen = udp(C, 5020, VIP1, 53, b"q");
    // A quote cut inside the TCP header, before its checksum.
    let short = &ip_part(&fwd_seg)[..IPV6_HLEN + 8];
    let short_seen = &ip_part(&seen_seg)[..IPV6_HLEN + 8];
    let table = vec![
        row(
            l,
            "set up a pod flow",
            PROG_FROM_POD,
            tcp(C, 40020, VIP1, 80, SYN, b""),
            NEXT,
            Exact(tcp(C, 40020, B, 8080, SYN, b"")),
            SvcNew,
        ),
        row(
            l,
            "Packet Too Big from a router about the DNATed segment",
            PROG_TO_POD,
            icmp6(X, C, 2, 0, mtu, ip_part(&fwd_seg)),
            NEXT,
            Exact(icmp6(X, C, 2, 0, mtu, ip_part(&seen_seg))),
            SvcIcmpError,
        ),
        row(
            l,
            "port unreachable from the backend itself comes from the ClusterIP",
            PROG_TO_POD,
            icmp6(B, C, 1, 4, [0; 4], ip_part(&fwd_seg)),
            NEXT,
            Exact(icmp6(VIP1, C, 1, 4, [0; 4], ip_part(&seen_seg))),
            SvcIcmpError,
        ),
        row(
            l,
            "time exceeded with a quote cut before the TCP checksum",
            PROG_TO_POD,
            icmp6(X, C, 3, 0, [0; 4], short),
            NEXT,
            Exact(icmp6(X, C, 3, 0, [0; 4], short_seen)),
            SvcIcmpError,
        ),
        row(
            l,
            "set up a UDP flow",
            PROG_FROM_POD,
            udp(C, 5020, VIP1, 53, b"q"),
            NEXT,
            Exact(udp(C, 5020, B, 5353, b"q")),
            SvcNew,
        ),
        row(
            l,
            "destination unreachable about a UDP datagram",
            PROG_TO_POD,
            icmp6(X, C, 1, 0, [0; 4], ip_part(&udp_fwd)),
            NEXT,
            Exact(icmp6(X, C, 1, 0, [0; 4], ip_part(&udp_seen))),
            SvcIcmpError,
        ),
        row(
            l,
            "set up a SNATed NodePort flow",
            PROG_FROM_UPLINK,
            tcp(E, 50000, N, 30080, SYN, b""),
            NEXT,
            Exact(tcp(N, SNAT_PORT, R, 8080, SYN, b"")),
            SvcNew,
        ),
        row(
            l,
            "PTB to the node about the SNATed segment goes to the client",
            PROG_FROM_UPLINK,
            icmp6(X, N, 2, 0, mtu, ip_part(&snat_seg)),
            NEXT,
            Exact(icmp6(X, E, 2, 0, mtu, ip_part(&ext_seg))),
            SvcIcmpError,
        ),
        row(
            l,
            "set up a Local-policy NodePort flow",
            PROG_FROM_UPLINK,
            tcp(E, 50001, N, 30081, SYN, b""),
            NEXT,
            Exact(tcp(E, 50001, L, 8080, SYN, b"")),
            SvcNew,
        ),
        // cilium#16080: a router tells the node the reply was too big; the backend must learn.
        row(
            l,
            "PTB about a reply from the NodePort reaches the backend",
            PROG_FROM_UPLINK,
            icmp6(X, N, 2, 0, mtu, ip_part(&reply_seg)),
            NEXT,
            Exact(icmp6(X, L, 2, 0, mtu, ip_part(&backend_view))),
            SvcIcmpError,
        ),
        row(
            l,
            "an error about an untracked flow is not ours",
            PROG_TO_POD,
            icmp6(X, C, 2, 0, mtu, ip_part(&tcp(C, 1, B, 2, PA, data))),
            NEXT,
            Unchanged,
            Pass,
        ),
        row(
            l,
            "an error whose quote is garbage is not ours",
            PROG_TO_POD,
            icmp6(X, C, 1, 0, [0; 4], &[0x45; 30]),
            NEXT,
            Unchanged,
            Pass,
        ),
    ];
    fixture::run(dp.ebpf_mut(), table);
}

/// sessionAffinity ClientIP: new flows of one client keep their backend; other clients spread.
#[test]
fn affinity_keeps_a_client_on_its_backend() {
    let (_pins, _layout, mut dp) = setup();
    let dst_of = |out: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(&out[38..54]).unwrap());
    let mut first = None;
    for sport in 42000..42016 {
        let r = fixture::test_run(
            dp.ebpf_mut(),
            PROG_FROM_POD,
            &tcp(C, sport, VIP6, 80, SYN, b""),
            None,
        )
        .unwrap();
        assert_eq!(r.verdict, NEXT);
        assert_checksums(&r.output);
        let d = dst_of(&r.output);
        assert_eq!(*first.get_or_insert(d), d, "sport {sport} went elsewhere");
    }
    // Without affinity the same 16 flows from other clients do not all land on one backend.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..16u16 {
        let client = v6(&format!("fd00:10::1:{i:x}"));
        let r = fixture::test_run(
            dp.ebpf_mut(),
            PROG_FROM_POD,
            &tcp(client, 42000, VIP6, 80, SYN, b""),
            None,
        )
        .unwrap();
        seen.insert(dst_of(&r.output));
    }
    assert!(seen.len() > 1, "16 clients all picked {seen:?}");
}

/// A backend that leaves keeps its established flows (the entry names it) while new flows
/// go to the remaining ones.
#[test]
fn existing_flows_keep_their_backend() {
    let (_pins, layout, mut dp) = setup();
    let mut st = desired();
    let id = sixlane_agent::model::ServiceId {
        namespace: "test".into(),
        name: "web".into(),
    };
    let r = fixture::test_run(
        dp.ebpf_mut(),
        PROG_FROM_POD,
        &tcp(C, 43000, VIP1, 80, SYN, b""),
        None,
    )
    .unwrap();
    assert_eq!(r.output, tcp(C, 43000, B, 8080, SYN, b""));
    // The endpoint moves to R.
    st.services.get_mut(&id).unwrap().ports[0].backends = vec![backend(R, 8080, false)];
    Programmer::open(&layout).unwrap().apply(&st).unwrap();
    let r = fixture::test_run(
        dp.ebpf_mut(),
        PROG_FROM_POD,
        &tcp(C, 43000, VIP1, 80, ACK, b""),
        None,
    )
    .unwrap();
    assert_eq!(
        r.output,
        tcp(C, 43000, B, 8080, ACK, b""),
        "existing flow moved"
    );
    let r = fixture::test_run(
        dp.ebpf_mut(),
        PROG_FROM_POD,
        &tcp(C, 43001, VIP1, 80, SYN, b""),
        None,
    )
    .unwrap();
    assert_eq!(
        r.output,
        tcp(C, 43001, R, 8080, SYN, b""),
        "new flow to the new backend"
    );
}

/// Generated errors are rate limited (RFC 4443 §2.4 (f)): a burst of new flows to a service
/// without endpoints gets replies up to the budget, the rest is dropped and counted.
#[test]
fn rejects_are_rate_limited() {
    let (_pins, layout, mut dp) = setup();
    let (mut replied, mut limited) = (0, 0);
    for sport in 0..300u16 {
        let r = fixture::test_run(
            dp.ebpf_mut(),
            PROG_FROM_POD,
            &tcp(C, 20000 + sport, VIP5, 80, SYN, b""),
            None,
        )
        .unwrap();
        match r.verdict {
            REDIRECT => replied += 1,
            verdict::SHOT => limited += 1,
            v => panic!("verdict {v}"),
        }
    }
    assert!(replied >= 100, "{replied} replies");
    assert!(limited > 0, "no reply was limited");
    let (_, n) = counters(&layout, Direction::Ingress, Reason::SvcRejectLimited);
    assert_eq!(n, limited);
}

/// Userspace garbage collection removes entries past their lifetime (here a 1 s UDP lifetime
/// from the configuration map), and live ones stay.
#[test]
fn garbage_collection_removes_dead_entries() {
    let (_pins, layout, mut dp) = setup();
    {
        let mut cfg: Array<&mut MapData, Config> =
            Array::try_from(dp.ebpf_mut().map_mut(MAP_SVC_CONFIG).unwrap()).unwrap();
        let mut c = cfg.get(&0, 0).unwrap();
        c.other_secs = 1;
        cfg.set(0, c, 0).unwrap();
    }
    let r = fixture::test_run(
        dp.ebpf_mut(),
        PROG_FROM_POD,
        &udp(C, 5000, VIP1, 53, b"q"),
        None,
    )
    .unwrap();
    assert_eq!(r.output, udp(C, 5000, B, 5353, b"q"));
    let r = fixture::test_run(
        dp.ebpf_mut(),
        PROG_FROM_POD,
        &tcp(C, 40000, VIP1, 80, SYN, b""),
        None,
    )
    .unwrap();
    assert_eq!(r.output, tcp(C, 40000, B, 8080, SYN, b""));
    let mut store = sixlane_agent::services::PinnedMaps::open(&layout).unwrap();
    let now = now_ns();
    let g = sixlane_agent::services::gc(&mut store, now).unwrap();
    assert_eq!((g.scanned, g.expired), (4, 0), "{g:?}");
    std::thread::sleep(Duration::from_millis(1100));
    let g = sixlane_agent::services::gc(&mut store, now_ns()).unwrap();
    assert_eq!(
        (g.scanned, g.expired),
        (4, 2),
        "the UDP pair goes, the TCP pair stays: {g:?}"
    );
    assert!(ct_entry(dp.ebpf_mut(), &key(C, 40000, VIP1, 80, 6)).is_some());
    assert!(ct_entry(dp.ebpf_mut(), &key(C, 5000, VIP1, 53, 17)).is_none());
}

/// Under pressure the kernel's LRU evicts old entries: new flows are never refused for a full
/// table.
#[test]
fn a_full_conntrack_evicts_instead_of_refusing() {
    sixlane_testkit::require_root();
    let pins = sixlane_testkit::PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    let opts = sixlane_agent::loader::LoadOptions {
        max_entries: [(MAP_CT.to_owned(), 256)].into_iter().collect(),
        ..Default::default()
    };
    let mut dp = sixlane_agent::loader::Datapath::load(&layout, &opts).unwrap();
    Programmer::open(&layout)
        .unwrap()
        .apply(&desired())
        .unwrap();
    for sport in 0..2000u16 {
        let r = fixture::test_run(
            dp.ebpf_mut(),
            PROG_FROM_POD,
            &tcp(C, 10000 + sport, VIP1, 80, SYN, b""),
            None,
        )
        .unwrap();
        assert_eq!(
            r.output,
            tcp(C, 10000 + sport, B, 8080, SYN, b""),
            "flow {sport}"
        );
    }
    let (_, full) = counters(&layout, Direction::Ingress, Reason::SvcCtFull);
    assert_eq!(full, 0);
    let (_, new) = counters(&layout, Direction::Ingress, Reason::SvcNew);
    assert_eq!(new, 2000);
    let mut store = sixlane_agent::services::PinnedMaps::open(&layout).unwrap();
    let flows = sixlane_agent::services::conntrack::list(&mut store, now_ns()).unwrap();
    assert!(
        flows.len() <= 256,
        "{} entries in a 256-entry map",
        flows.len()
    );
    // The newest flow is tracked in full.
    assert!(ct_entry(dp.ebpf_mut(), &key(C, 11999, VIP1, 80, 6)).is_some());
    assert!(ct_entry(dp.ebpf_mut(), &key(B, 8080, C, 11999, 6)).is_some());
}

const VIP8: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 8);

/// A test-run context on interface `ifindex` (of the namespace the run happens in).
fn on(ifindex: u32) -> SkBuffCtx {
    let mut c = SkBuffCtx::default();
    c.ifindex = ifindex;
    c
}

fn hop_limit(mut frame: Vec<u8>, hl: u8) -> Vec<u8> {
    frame[packet::ETH_HLEN + 7] = hl;
    frame
}

/// Check: the conntrack entry for `k` has `flags` set (and none of `unset`) and `ifindex`.
fn ct_is(
    k: CtKey,
    flags: u16,
    unset: u16,
    ifindex: u32,
) -> impl Fn(&mut Ebpf) -> Result<(), String> {
    move |ebpf| {
        let e = ct_entry(ebpf, &k).ok_or("no conntrack entry")?;
        if e.flags & flags != flags || e.flags & unset != 0 || e.ifindex != ifindex {
            return Err(format!(
                "flags {:#x} ifindex {}; want {flags:#x} set, {unset:#x} unset, ifindex {ifindex}",
                e.flags, e.ifindex
            ));
        }
        Ok(())
    }
}

fn set_fast_path(ebpf: &mut Ebpf, on: bool) -> Result<(), String> {
    let mut cfg: Array<&mut MapData, Config> =
        Array::try_from(ebpf.map_mut(MAP_SVC_CONFIG).unwrap()).unwrap();
    let mut c = cfg.get(&0, 0).map_err(|e| e.to_string())?;
    c.flags = if on {
        0
    } else {
        config_flags::NO_POD_FAST_PATH
    };
    cfg.set(0, c, 0).map_err(|e| e.to_string())
}

/// Service traffic between two pods of the node goes straight from one pod's veth into the
/// other pod (`bpf_redirect_peer`) once the backend's veth is known from its first reply:
/// Ethernet addresses from the node's neighbour table, hop limit decremented. Whatever the
/// node's forwarding must see (hop limit 1, a client no longer routed through its veth, the
/// fast path switched off) takes the usual path and is translated at the usual hooks.
#[test]
fn local_pods_are_reached_straight_through_their_veths() {
    const C3: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xc3);
    let node = PodsNode::new(&[C], &[L]);
    let (_pins, layout, mut dp) = setup_with(vec![service(
        "local",
        VIP8,
        80,
        vec![backend(L, 8080, true)],
    )]);
    let (a, b) = (&node.a, &node.b);
    let (ai, bi) = (a.ifindex, b.ifindex);
    let l = &layout;
    let ebpf = dp.ebpf_mut();
    node.ns.enter(|| {
        use Output::{Exact, Unchanged};
        use Reason::*;
        let table = vec![
            row(
                l,
                "SYN to a local backend: DNAT, forwarded by the node (its veth is not known yet)",
                PROG_FROM_POD,
                tcp(C, 41000, VIP8, 80, SYN, b""),
                NEXT,
                Exact(tcp(C, 41000, L, 8080, SYN, b"")),
                SvcNew,
            )
            .ctx(on(ai))
            .check(ct_is(key(L, 8080, C, 41000, 6), ct_flags::PEER, 0, ai))
            .check(ct_is(key(C, 41000, VIP8, 80, 6), 0, 0, 0)),
            row(
                l,
                "SYN-ACK on the backend's veth: translated and delivered into the client",
                PROG_FROM_POD,
                tcp(L, 8080, C, 41000, SA, b""),
                REDIRECT,
                Exact(into_pod(tcp(VIP8, 80, C, 41000, SA, b""), a)),
                SvcPeer,
            )
            .ctx(on(bi))
            // The backend's veth is learned for the client's next packets.
            .check(ct_is(key(C, 41000, VIP8, 80, 6), ct_flags::FORWARD, 0, bi))
            .check(ct_state_is(
                key(L, 8080, C, 41000, 6),
                ct_state::SEEN_REPLY,
                60,
            )),
            row(
                l,
                "ACK: translated and delivered into the backend",
                PROG_FROM_POD,
                tcp(C, 41000, VIP8, 80, ACK, b""),
                REDIRECT,
                Exact(into_pod(tcp(C, 41000, L, 8080, ACK, b""), b)),
                SvcPeer,
            )
            .ctx(on(ai))
            .check(ct_state_is(
                key(C, 41000, VIP8, 80, 6),
                ct_state::ESTABLISHED,
                6 * 3600,
            )),
            row(
                l,
                "request with hop limit 1: the node's forwarding answers it (Time Exceeded)",
                PROG_FROM_POD,
                hop_limit(tcp(C, 41000, VIP8, 80, PA, b"GET"), 1),
                NEXT,
                Exact(hop_limit(tcp(C, 41000, L, 8080, PA, b"GET"), 1)),
                SvcForward,
            )
            .ctx(on(ai)),
            row(
                l,
                "reply with hop limit 1 passes its veth untouched...",
                PROG_FROM_POD,
                hop_limit(tcp(L, 8080, C, 41000, PA, b"200"), 1),
                NEXT,
                Unchanged,
                Pass,
            )
            .ctx(on(bi)),
            row(
                l,
                "...and is translated at the client veth's egress",
                PROG_TO_POD,
                hop_limit(tcp(L, 8080, C, 41000, PA, b"200"), 1),
                NEXT,
                Exact(hop_limit(tcp(VIP8, 80, C, 41000, PA, b"200"), 1)),
                SvcReverse,
            )
            .ctx(on(ai)),
            row(
                l,
                "a client the node does not route through the veth it came from...",
                PROG_FROM_POD,
                tcp(C3, 41000, VIP8, 80, SYN, b""),
                NEXT,
                Exact(tcp(C3, 41000, L, 8080, SYN, b"")),
                SvcNew,
            )
            .ctx(on(ai)),
            row(
                l,
                "...gets its replies through the node's forwarding",
                PROG_FROM_POD,
                tcp(L, 8080, C3, 41000, SA, b""),
                NEXT,
                Unchanged,
                Pass,
            )
            .ctx(on(bi)),
            row(
                l,
                "fast path off: a known backend veth is not used",
                PROG_FROM_POD,
                tcp(C, 41000, VIP8, 80, PA, b"GET"),
                NEXT,
                Exact(tcp(C, 41000, L, 8080, PA, b"GET")),
                SvcForward,
            )
            .ctx(on(ai))
            .setup(|e| set_fast_path(e, false)),
            row(
                l,
                "fast path off: new flows are not marked for it",
                PROG_FROM_POD,
                tcp(C, 41001, VIP8, 80, SYN, b""),
                NEXT,
                Exact(tcp(C, 41001, L, 8080, SYN, b"")),
                SvcNew,
            )
            .ctx(on(ai))
            .check(ct_is(key(L, 8080, C, 41001, 6), 0, ct_flags::PEER, 0)),
            row(
                l,
                "fast path off: replies pass the backend's veth",
                PROG_FROM_POD,
                tcp(L, 8080, C, 41001, SA, b""),
                NEXT,
                Unchanged,
                Pass,
            )
            .ctx(on(bi)),
            row(
                l,
                "fast path off: replies are translated at the client veth's egress",
                PROG_TO_POD,
                tcp(L, 8080, C, 41001, SA, b""),
                NEXT,
                Exact(tcp(VIP8, 80, C, 41001, SA, b"")),
                SvcReverse,
            )
            .ctx(on(ai)),
        ];
        fixture::run(ebpf, table);
    });
}
