//! The first program through the harness: the per-CPU packet counters.
//!
//! - a BPF_PROG_TEST_RUN fixture table (verdict, unchanged packet, exactly one counter bumped);
//! - real traffic through a veth between two namespaces, counted by links pinned under a
//!   per-test bpffs directory;
//! - reloading the object keeps the pinned maps (counters survive) and swaps the programs behind
//!   the links atomically (traffic during the swap is counted frame for frame), with exactly one
//!   program per hook afterwards;
//! - a pinned map with another layout is refused unless replacement is asked for.

use std::{
    net::{Ipv6Addr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuValues},
    programs::{SchedClassifier, TcAttachType},
};
use sixlane_agent::{
    Error, PinLayout,
    loader::{Datapath, LoadOptions},
    metrics,
};
use sixlane_attach::{Attached, tcx};
use sixlane_common::{
    layout::{Hook, MAP_METRICS, MAP_NAT64_CONFIG, PROG_COUNT_EGRESS, PROG_COUNT_INGRESS},
    metrics::{Counter, Direction, METRICS_ENTRIES, Reason, slot},
};
use sixlane_testkit::{
    NetNs, PinDir, Veth,
    fixture::{self, Fixture, Output, verdict},
    packet::{self, TcpFlags},
};
use sixlane_tests::load_datapath;

fn counters(ebpf: &mut Ebpf) -> PerCpuArray<&mut MapData, Counter> {
    PerCpuArray::try_from(ebpf.map_mut(MAP_METRICS).expect("metrics map")).expect("per-cpu array")
}

fn reset(ebpf: &mut Ebpf) -> Result<(), String> {
    let mut m = counters(ebpf);
    let ncpu = aya::util::nr_cpus().map_err(|(_, e)| e.to_string())?;
    for i in 0..METRICS_ENTRIES {
        let zero =
            PerCpuValues::try_from(vec![Counter::default(); ncpu]).map_err(|e| e.to_string())?;
        m.set(i, zero, 0).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Check: exactly one packet of `len` bytes was counted, under (dir, reason), and nothing else.
fn only(dir: Direction, reason: Reason, len: usize) -> impl Fn(&mut Ebpf) -> Result<(), String> {
    move |ebpf| {
        let m = counters(ebpf);
        for i in 0..METRICS_ENTRIES {
            let sum = m
                .get(&i, 0)
                .map_err(|e| e.to_string())?
                .iter()
                .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            let want = if i == slot(dir, reason) {
                (1, len as u64)
            } else {
                (0, 0)
            };
            if sum != want {
                return Err(format!(
                    "slot {i}: (packets, bytes) = {sum:?}, want {want:?}"
                ));
            }
        }
        Ok(())
    }
}

#[test]
fn counter_fixture_table() {
    let (_pins, _layout, mut dp) = load_datapath();
    let v6 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let syn = packet::tcp(v6("fd00::1"), 40000, v6("fd00::2"), 80, TcpFlags::SYN, b"");
    let udp4 = packet::udp(v6("198.18.0.1"), 5000, v6("198.18.0.2"), 53, b"query");
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&packet::MAC_A);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    // (A truncated IPv6 header cannot be injected here: BPF_PROG_TEST_RUN rejects it with
    // EINVAL. The real-traffic test sends one through a veth instead.)
    // A full-length header whose version nibble says 4.
    let mut wrong_version = syn.clone();
    wrong_version[packet::ETH_HLEN] = 0x45;
    // IPv4 with IHL 4 (16 bytes): impossible.
    let mut bad_ihl = udp4.clone();
    bad_ihl[packet::ETH_HLEN] = 0x44;

    // IPv6 with extension headers: a chain the parser walks, one longer than it does, a later
    // fragment (no upper-layer header), and lengths that lie.
    let with_ext = ipv6_with_ext(&[HOPOPTS, DSTOPTS], TCP, &[0u8; 20]);
    let too_long = ipv6_with_ext(&[DSTOPTS; 7], TCP, &[0u8; 20]);
    let later_frag = {
        let mut p = ipv6_with_ext(&[FRAGMENT], UDP, &[0u8; 8]);
        // Fragment offset 8 (bytes 2..4 of the fragment header, in 8-octet units << 3).
        let fh = packet::ETH_HLEN + packet::IPV6_HLEN;
        p[fh + 2] = 0;
        p[fh + 3] = 8;
        p
    };
    let short_tcp = ipv6_with_ext(&[], TCP, &[0u8; 3]);
    let mut long_plen = with_ext.clone();
    long_plen[packet::ETH_HLEN + 4] = 0x0f;
    let mut long_total4 = udp4.clone();
    long_total4[packet::ETH_HLEN + 2] = 0x0f;
    let mut later_frag4 = udp4.clone();
    later_frag4[packet::ETH_HLEN + 6] = 0x00;
    later_frag4[packet::ETH_HLEN + 7] = 0x10;
    let echo6 = packet::icmp6_echo(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        1,
        1,
        b"x",
    );

    use Direction::{Egress as Out, Ingress as In};
    use Reason::{Malformed as Bad, Pass, Unsupported as Unsup};
    let rows = [
        (In, "ipv6 tcp syn", syn.clone(), Pass),
        (Out, "ipv6 tcp syn", syn, Pass),
        (Out, "ipv4 udp", udp4, Pass),
        (In, "arp (not ip)", arp, Pass),
        (Out, "ipv6 ethertype, version 4", wrong_version, Bad),
        (In, "ipv4 ihl 4", bad_ihl, Bad),
        (In, "ipv6 hop-by-hop + dstopts + tcp", with_ext, Pass),
        (In, "ipv6 seven extension headers", too_long, Unsup),
        (Out, "ipv6 later fragment", later_frag, Pass),
        (Out, "ipv6 tcp header cut at 3 bytes", short_tcp, Bad),
        (In, "ipv6 payload length beyond the frame", long_plen, Bad),
        (In, "ipv4 total length beyond the frame", long_total4, Bad),
        (Out, "ipv4 later fragment", later_frag4, Pass),
        (In, "icmpv6 echo", echo6, Pass),
    ];
    let table = rows.into_iter().map(|(dir, name, pkt, reason)| {
        let prog = match dir {
            In => PROG_COUNT_INGRESS,
            Out => PROG_COUNT_EGRESS,
        };
        let len = pkt.len();
        Fixture::new(name, prog, pkt)
            .setup(reset)
            .verdict(verdict::NEXT)
            .output(Output::Unchanged)
            .check(only(dir, reason, len))
    });
    fixture::run(dp.ebpf_mut(), table);
}

const HOPOPTS: u8 = 0;
const TCP: u8 = 6;
const UDP: u8 = 17;
const FRAGMENT: u8 = 44;
const DSTOPTS: u8 = 60;

/// Ethernet + IPv6 fd00::1 → fd00::2 + 8-byte extension headers of the given types + an upper
/// layer of protocol `upper` with `payload` as its bytes. Checksums are not filled in: only the
/// header chain matters to the parser.
fn ipv6_with_ext(exts: &[u8], upper: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&packet::MAC_B);
    p.extend_from_slice(&packet::MAC_A);
    p.extend_from_slice(&[0x86, 0xdd]);
    let plen = exts.len() * 8 + payload.len();
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(plen as u16).to_be_bytes());
    p.push(exts.first().copied().unwrap_or(upper));
    p.push(64);
    p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
    for (i, _) in exts.iter().enumerate() {
        let next = exts.get(i + 1).copied().unwrap_or(upper);
        p.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
    }
    p.extend_from_slice(payload);
    p
}

/// Two namespaces joined by a veth with a quiet link: no link-local address (so no DAD, no router
/// solicitation), global addresses without DAD, static neighbours and no MLD. The only frames are
/// what the test sends. Counters attach to `a` in `ns1`.
struct Pair {
    ns1: NetNs,
    ns2: NetNs,
    veth: Veth,
}

const A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5e, 0, 0, 0, 0, 0, 1);
const B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5e, 0, 0, 0, 0, 0, 2);

fn pair() -> Pair {
    let ns1 = NetNs::new().unwrap();
    let ns2 = NetNs::new().unwrap();
    let veth = Veth::new_down(Some(&ns1), Some(&ns2)).unwrap();
    for (ns, end) in [(&ns1, &veth.a), (&ns2, &veth.b)] {
        end.ip(&[
            "link",
            "set",
            "{}",
            "addrgenmode",
            "none",
            "multicast",
            "off",
        ])
        .unwrap();
        let conf = format!("net.ipv6.conf.{}", end.name);
        ns.sysctl(&format!("{conf}.router_solicitations"), "0")
            .unwrap();
        // Joining the solicited-node group triggers unsolicited MLD reports, spread over up
        // to a second by default: send them at once, before the counters are attached.
        ns.sysctl(&format!("{conf}.mldv1_unsolicited_report_interval"), "1")
            .unwrap();
        ns.sysctl(&format!("{conf}.mldv2_unsolicited_report_interval"), "1")
            .unwrap();
        end.ip(&["link", "set", "{}", "up"]).unwrap();
    }
    veth.a
        .ip(&["addr", "add", &format!("{A}/64"), "dev", "{}", "nodad"])
        .unwrap();
    veth.b
        .ip(&["addr", "add", &format!("{B}/64"), "dev", "{}", "nodad"])
        .unwrap();
    let mac = |end: &sixlane_testkit::veth::End| {
        let out = end.ip(&["-br", "link", "show", "{}"]).unwrap();
        out.split_whitespace().nth(2).unwrap().to_owned()
    };
    let (mac_a, mac_b) = (mac(&veth.a), mac(&veth.b));
    veth.a
        .ip(&[
            "neigh",
            "replace",
            &B.to_string(),
            "lladdr",
            &mac_b,
            "dev",
            "{}",
            "nud",
            "permanent",
        ])
        .unwrap();
    veth.b
        .ip(&[
            "neigh",
            "replace",
            &A.to_string(),
            "lladdr",
            &mac_a,
            "dev",
            "{}",
            "nud",
            "permanent",
        ])
        .unwrap();
    Pair { ns1, ns2, veth }
}

/// Attaches the counters to `a` and waits until the link is quiet (no packet counted for 300 ms,
/// so late MLD reports from address configuration cannot land in a measurement window).
fn attach_counters(p: &Pair, layout: &PinLayout) {
    attach_only(p, layout);
    let all = || -> u64 {
        metrics::read(layout)
            .unwrap()
            .iter()
            .map(|r| r.packets)
            .sum()
    };
    let mut last = all();
    let mut quiet = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = all();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet == 3 {
            return;
        }
    }
    panic!("the test link never went quiet");
}

fn attach_only(p: &Pair, layout: &PinLayout) {
    p.ns1.enter(|| {
        for (prog, hook) in [
            (PROG_COUNT_INGRESS, Hook::Ingress),
            (PROG_COUNT_EGRESS, Hook::Egress),
        ] {
            let got = tcx::attach_pinned(layout, prog, &p.veth.a.name, hook).unwrap();
            assert_eq!(got, Attached::Created);
        }
    });
}

const PAYLOAD: usize = 100;
/// Ethernet + IPv6 + UDP + payload.
const FRAME: u64 = (packet::ETH_HLEN + packet::IPV6_HLEN + 8 + PAYLOAD) as u64;

/// Sends `n` datagrams from A (ns1) to an echo server at B (ns2) and waits for every echo.
fn ping_pong(p: &Pair, n: usize) {
    let server = p
        .ns2
        .enter(|| UdpSocket::bind(SocketAddr::from((B, 0))).unwrap());
    let server_addr = server.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..n {
            let (len, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(&buf[..len], from).unwrap();
        }
    });
    let client = p
        .ns1
        .enter(|| UdpSocket::bind(SocketAddr::from((A, 0))).unwrap());
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..n {
        client.send_to(&[i as u8; PAYLOAD], server_addr).unwrap();
        let (len, _) = client.recv_from(&mut buf).expect("echo reply");
        assert_eq!(len, PAYLOAD);
    }
    echo.join().unwrap();
}

/// Round trips from A (ns1) to an echo server at B (ns2), one datagram in flight, until
/// stopped: each is exactly one frame out of `a` and one into it, whichever programs run there.
struct Traffic {
    stop: Arc<AtomicBool>,
    server_stop: Arc<AtomicBool>,
    trips: Arc<AtomicU64>,
    client: JoinHandle<u64>,
    server: JoinHandle<()>,
}

impl Traffic {
    fn start(p: &Pair) -> Self {
        let server = p
            .ns2
            .enter(|| UdpSocket::bind(SocketAddr::from((B, 0))).unwrap());
        let server_addr = server.local_addr().unwrap();
        let client = p
            .ns1
            .enter(|| UdpSocket::bind(SocketAddr::from((A, 0))).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let server_stop = Arc::new(AtomicBool::new(false));
        let trips = Arc::new(AtomicU64::new(0));
        // The client stops after a complete round trip; the server has its own flag, raised
        // only once the client has stopped, so it never leaves the client's last datagram
        // unanswered.
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let server = {
            let stop = server_stop.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, from)) = server.recv_from(&mut buf) {
                        server.send_to(&buf[..len], from).unwrap();
                    }
                }
            })
        };
        let client = {
            let (stop, trips) = (stop.clone(), trips.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    client.send_to(&[n as u8; PAYLOAD], server_addr).unwrap();
                    let (len, _) = client.recv_from(&mut buf).expect("echo reply");
                    assert_eq!(len, PAYLOAD);
                    n += 1;
                    trips.store(n, Ordering::Relaxed);
                }
                n
            })
        };
        Self {
            stop,
            server_stop,
            trips,
            client,
            server,
        }
    }

    /// Returns once `n` more round trips than now have completed.
    fn wait_for(&self, n: u64) {
        let target = self.trips.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.trips.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the traffic stalled");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops after the round trip under way; returns how many completed.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.client.join().unwrap();
        self.server_stop.store(true, Ordering::Relaxed);
        self.server.join().unwrap();
        n
    }
}

fn total(layout: &PinLayout, dir: Direction, reason: Reason) -> Counter {
    metrics::get(&metrics::read(layout).unwrap(), dir, reason)
}

#[test]
fn counters_count_real_traffic_through_pinned_links() {
    let (_pins, layout, dp) = load_datapath();
    let p = pair();
    attach_counters(&p, &layout);
    // The programs stay attached through their pins alone: the loader can go away.
    drop(dp);

    let e0 = total(&layout, Direction::Egress, Reason::Pass);
    let i0 = total(&layout, Direction::Ingress, Reason::Pass);
    ping_pong(&p, 200);
    let e1 = total(&layout, Direction::Egress, Reason::Pass);
    let i1 = total(&layout, Direction::Ingress, Reason::Pass);
    // Static neighbours and no DAD: the only frames on the link are ours.
    assert_eq!(e1.packets - e0.packets, 200, "egress packets");
    assert_eq!(i1.packets - i0.packets, 200, "ingress packets");
    assert_eq!(e1.bytes - e0.bytes, 200 * FRAME, "egress bytes");
    assert_eq!(i1.bytes - i0.bytes, 200 * FRAME, "ingress bytes");
    assert_eq!(
        total(&layout, Direction::Ingress, Reason::Malformed).packets,
        0
    );

    // Frames claiming IPv6 with a truncated header, sent raw from the other end.
    let runt = {
        let mut f = vec![0u8; packet::ETH_HLEN + 20];
        f[12] = 0x86;
        f[13] = 0xdd;
        f[packet::ETH_HLEN] = 0x60;
        f
    };
    p.ns2
        .enter(|| packet::send_raw(&p.veth.b.name, &runt, 3).unwrap());
    let m = total(&layout, Direction::Ingress, Reason::Malformed);
    assert_eq!((m.packets, m.bytes), (3, 3 * runt.len() as u64));

    // Detaching (removing the link pins) stops the counting.
    assert!(tcx::detach(&layout, &p.veth.a.name, PROG_COUNT_EGRESS).unwrap());
    assert!(tcx::detach(&layout, &p.veth.a.name, PROG_COUNT_INGRESS).unwrap());
    assert!(!tcx::detach(&layout, &p.veth.a.name, PROG_COUNT_INGRESS).unwrap());
    ping_pong(&p, 20);
    assert_eq!(total(&layout, Direction::Egress, Reason::Pass), e1);
    assert_eq!(total(&layout, Direction::Ingress, Reason::Pass), i1);
}

fn tcx_program_ids(p: &Pair, hook: TcAttachType) -> Vec<u32> {
    p.ns1.enter(|| {
        let (_, progs) = SchedClassifier::query_tcx(&p.veth.a.name, hook).unwrap();
        progs.iter().map(|i| i.id()).collect()
    })
}

#[test]
fn reload_keeps_state_and_swaps_programs_atomically() {
    let (_pins, layout, dp) = load_datapath();
    let p = pair();
    attach_counters(&p, &layout);
    let old_ingress = tcx_program_ids(&p, TcAttachType::Ingress);
    assert_eq!(old_ingress.len(), 1);
    let start = total(&layout, Direction::Egress, Reason::Pass);
    ping_pong(&p, 50);
    let before = total(&layout, Direction::Egress, Reason::Pass);
    assert_eq!(before.packets - start.packets, 50);
    drop(dp);

    // A second load (agent restart or upgrade) reuses the pinned map and re-points the links.
    let mut dp2 = Datapath::load(&layout, &LoadOptions::default()).unwrap();
    let report = dp2.repoint_attachments().unwrap();
    assert_eq!(report.tcx.replaced, 2, "{report:?}");
    let new_ingress = tcx_program_ids(&p, TcAttachType::Ingress);
    assert_eq!(new_ingress.len(), 1, "one program per hook, never two");
    assert_ne!(new_ingress, old_ingress, "the link runs the new program");
    let expected = dp2
        .classifier(PROG_COUNT_INGRESS)
        .unwrap()
        .info()
        .unwrap()
        .id();
    assert_eq!(new_ingress, vec![expected]);
    assert_eq!(
        total(&layout, Direction::Egress, Reason::Pass),
        before,
        "state kept"
    );

    ping_pong(&p, 30);
    assert_eq!(
        total(&layout, Direction::Egress, Reason::Pass).packets - start.packets,
        80
    );
    // Running the upgrade again is a no-op.
    assert_eq!(dp2.repoint_attachments().unwrap().tcx.current, 2);

    // Re-attaching the same program to the same interface replaces, it does not stack.
    p.ns1.enter(|| {
        let got =
            tcx::attach_pinned(&layout, PROG_COUNT_INGRESS, &p.veth.a.name, Hook::Ingress).unwrap();
        assert_eq!(got, Attached::Replaced);
    });
    assert_eq!(tcx_program_ids(&p, TcAttachType::Ingress).len(), 1);
    drop(dp2);

    // Atomically: another restart swaps the programs while datagrams cross the link. Each frame
    // is counted once, by the old programs or the new ones: none passed a hook while it had no
    // program, or two.
    let (e0, i0) = (
        total(&layout, Direction::Egress, Reason::Pass),
        total(&layout, Direction::Ingress, Reason::Pass),
    );
    let traffic = Traffic::start(&p);
    traffic.wait_for(100);
    let mut dp3 = Datapath::load(&layout, &LoadOptions::default()).unwrap();
    let report = dp3.repoint_attachments().unwrap();
    traffic.wait_for(100);
    let trips = traffic.stop();
    assert_eq!(report.tcx.replaced, 2, "{report:?}");
    assert_ne!(
        tcx_program_ids(&p, TcAttachType::Ingress),
        new_ingress,
        "swapped under traffic"
    );
    let counted = |dir| total(&layout, dir, Reason::Pass).packets;
    assert_eq!(counted(Direction::Egress) - e0.packets, trips, "egress");
    assert_eq!(counted(Direction::Ingress) - i0.packets, trips, "ingress");
}

#[test]
fn incompatible_pinned_map_is_refused_unless_replaced() {
    sixlane_testkit::require_root();
    let pins = PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    layout.create().unwrap();
    // Same name, wrong value size (8 instead of 16).
    let fake = PerCpuArray::<MapData, u64>::create(METRICS_ENTRIES, 0).unwrap();
    fake.pin(layout.map(MAP_METRICS)).unwrap();

    let err = Datapath::load(&layout, &LoadOptions::default()).unwrap_err();
    match &err {
        Error::IncompatibleMap { name, diffs, .. } => {
            assert_eq!(name, MAP_METRICS);
            assert!(diffs.to_string().contains("value size 8 != 16"), "{diffs}");
        }
        other => panic!(
            "expected IncompatibleMap, got {}",
            sixlane_attach::chain(other)
        ),
    }
    let opts = LoadOptions {
        replace_incompatible_maps: true,
        ..Default::default()
    };
    Datapath::load(&layout, &opts).unwrap();
    let info = aya::maps::MapInfo::from_pin(layout.map(MAP_METRICS)).unwrap();
    assert_eq!(info.value_size(), 16);
}

/// NAT64's configuration map holds nothing the agent does not write again: an older layout
/// of it is replaced without asking.
#[test]
fn an_older_configuration_map_is_replaced_without_asking() {
    sixlane_testkit::require_root();
    let pins = PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    layout.create().unwrap();
    // The entry before it carried `ipv4Mtu`: 112 bytes.
    let old = aya::maps::Array::<MapData, [u8; 112]>::create(1, 0).unwrap();
    old.pin(layout.map(MAP_NAT64_CONFIG)).unwrap();
    Datapath::load(&layout, &LoadOptions::default()).unwrap();
    let info = aya::maps::MapInfo::from_pin(layout.map(MAP_NAT64_CONFIG)).unwrap();
    assert_eq!(
        info.value_size() as usize,
        std::mem::size_of::<sixlane_common::nat64::maps::Config>()
    );
}

#[test]
fn attach_without_loaded_datapath_names_the_missing_pin() {
    sixlane_testkit::require_root();
    let pins = PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    let err = tcx::attach_pinned(&layout, PROG_COUNT_INGRESS, "lo", Hook::Ingress).unwrap_err();
    assert!(
        matches!(err, sixlane_attach::Error::NotPinned { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("is sixlane-agent running"),
        "{err}"
    );
}
