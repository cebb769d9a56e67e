//! NAT64 end to end in network namespaces: an IPv6-only pod (plumbed by `sim::SimPod`, which
//! becomes the real CNI plugin) reaches an IPv4-only server in a simulated internet
//! (198.18.0.0/15) through its node's tc programs. Real kernels, real TCP, real DNS64.
//!
//! ```text
//!  pod (fd00:10::a/128) ─veth─ node ─up─ rtr ─wan─ inet (198.18.1.10, IPv4 only)
//!                               pool 198.18.0.1, prefix fd00:6464::/96
//! ```

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use sixlane_agent::{
    PinLayout,
    loader::{Datapath, LoadOptions},
    metrics,
    nat64::{Nat64Config, Span, state},
};
use sixlane_attach::sources::Sources;
use sixlane_common::{
    layout::UPLINK_PROGRAMS,
    metrics::{Direction, Reason},
    nat64::maps::DIR_OUT,
};
use sixlane_testkit::{NetNs, PinDir};
use sixlane_tests::{
    bins, dns64,
    echo::{EchoServer, connect, round_trip},
    load_datapath,
    nat64::{self as n, HttpServer, Internet, SERVER4},
    sim::{self, SimPod},
    spoof,
};

const PREFIX: &str = "fd00:6464::/96";
const POD_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xa);

fn server6() -> Ipv6Addr {
    n::embed96("fd00:6464::".parse().unwrap(), SERVER4)
}

fn cfg(ports: Span) -> Nat64Config {
    n::config(
        PREFIX,
        &[n::NODE4],
        &["fd00:10::/64", "fd00:20::/64"],
        ports,
    )
}

struct World {
    pod: SimPod,
    net: Internet,
    node: NetNs,
    layout: PinLayout,
    dp: Option<Datapath>,
    _pins: PinDir,
}

fn world(c: &Nat64Config) -> World {
    let (pins, layout, dp) = load_datapath();
    n::apply(&layout, c);
    let node = sim::node().unwrap();
    let net = Internet::new(&node).unwrap();
    n::attach_uplink(&node, &layout, net.uplink());
    let pod = SimPod::attach(&node, POD_A, Some(&layout)).unwrap();
    World {
        pod,
        net,
        node,
        layout,
        dp: Some(dp),
        _pins: pins,
    }
}

fn count(layout: &PinLayout, r: Reason) -> u64 {
    metrics::get(&metrics::read(layout).unwrap(), Direction::Ingress, r).packets
}

fn http_get(w: &World, url: &str) -> std::process::Output {
    w.pod
        .ns
        .exec_output("curl", &["-6", "-sS", "--max-time", "10", url])
        .unwrap()
}

/// A pod sending from another pod's address (one NAT64 serves) is dropped at its veth, before
/// translation (docs/cni.md, "Source validation"); from its own, it is translated.
#[test]
fn a_spoofed_source_is_not_translated() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let dst = server6().to_string();
    let before = count(&w.layout, Reason::Nat64Out);
    spoof::ping_from(&w.pod.ns, &POD_A.to_string(), &dst, 3);
    assert_eq!(count(&w.layout, Reason::Nat64Out) - before, 3);

    let other = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xb);
    spoof::claim(&w.pod.ns, other);
    let before = (
        count(&w.layout, Reason::Nat64Out),
        spoof::spoofed(&w.layout),
    );
    spoof::ping_from(&w.pod.ns, &other.to_string(), &dst, 3);
    assert_eq!(count(&w.layout, Reason::Nat64Out), before.0, "translated");
    assert_eq!(spoof::spoofed(&w.layout) - before.1, 3);
}

#[test]
fn pod_fetches_over_http_and_pings_an_ipv4_only_server() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let body = b"hello from the IPv4 internet\n".repeat(20_000);
    let _srv = HttpServer::start(&w.net.inet, SocketAddr::from((SERVER4, 8080)), body.clone());
    let url = format!("http://[{}]:8080/", server6());
    let out = http_get(&w, &url);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout, body,
        "600 KB body intact through NAT64 (GSO/GRO, checksums)"
    );

    let out = w
        .pod
        .ns
        .exec_output(
            "ping",
            &[
                "-6",
                "-c",
                "3",
                "-i",
                "0.2",
                "-w",
                "10",
                &server6().to_string(),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 received"));

    assert!(count(&w.layout, Reason::Nat64Out) > 0);
    // Replies went straight into the pod (its sessions record its veth: the pod fast path).
    assert!(count(&w.layout, Reason::Nat64InPeer) > 0);

    // The CLI shows the bindings and sessions from the pins.
    let agent = bins::path("sixlane-agent");
    let root = w.layout.root().to_string_lossy().into_owned();
    let rows = bins::agent_json(w.layout.root(), &["nat64", "sessions"]);
    let rows = rows.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["proto"] == "tcp"
            && r["peer"] == SERVER4.to_string()
            && r["pod"] == POD_A.to_string()
            && r["peer6"] == server6().to_string()),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r["proto"] == "icmp"), "{rows:?}");
    let out = std::process::Command::new(&agent)
        .args(["--pin-root", &root, "nat64"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("nat64_out") && text.contains("198.18.0.1:"),
        "{text}"
    );
}

/// traceroute through the translator: hop 1 is the translator (its Pref64::pool address),
/// hop 2 the IPv4 router, whose ICMPv4 Time Exceeded arrives translated.
#[test]
fn ttl_expiry_returns_translated_icmp_errors() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let hop = |ttl: &str| {
        let out = w
            .pod
            .ns
            .exec_output(
                "ping",
                &[
                    "-6",
                    "-n",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "-t",
                    ttl,
                    &server6().to_string(),
                ],
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let translator = n::embed96("fd00:6464::".parse().unwrap(), n::NODE4);
    let router = n::embed96("fd00:6464::".parse().unwrap(), n::RTR4);
    let h1 = hop("1");
    assert!(
        h1.contains(&format!("From {translator}")) && h1.contains("Time exceeded"),
        "{h1}"
    );
    let h2 = hop("2");
    assert!(
        h2.contains(&format!("From {router}")) && h2.contains("Time exceeded"),
        "{h2}"
    );
    assert!(count(&w.layout, Reason::Nat64HopLimit) >= 1);
    assert!(count(&w.layout, Reason::Nat64IcmpErrIn) >= 1);
    let h3 = hop("3");
    assert!(h3.contains("1 received"), "{h3}");
}

/// A smaller IPv4 link beyond the router: its Fragmentation Needed becomes a Packet Too Big the
/// pod's TCP honours (PMTUD through the translator), and the upload completes.
#[test]
fn ipv4_pmtu_drop_produces_a_packet_too_big_the_pod_honours() {
    let w = world(&cfg(Span::new(61001, 65535)));
    // The router's side of the server link: 1280 bytes. The server's own side stays at 1500
    // (so its MSS does not hide the problem).
    w.net
        .wan
        .a
        .ip(&["link", "set", "{}", "mtu", "1280"])
        .unwrap();
    let _srv = HttpServer::start(&w.net.inet, SocketAddr::from((SERVER4, 8080)), Vec::new());
    let file = std::env::temp_dir().join(sixlane_testkit::names::unique('f'));
    std::fs::write(&file, vec![b'x'; 300_000]).unwrap();
    let url = format!("http://[{}]:8080/upload", server6());
    let out = w
        .pod
        .ns
        .exec_output(
            "curl",
            &[
                "-6",
                "-sS",
                "--max-time",
                "20",
                "--data-binary",
                &format!("@{}", file.display()),
                &url,
            ],
        )
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "received 300000");
    assert!(
        count(&w.layout, Reason::Nat64IcmpErrIn) >= 1,
        "a Fragmentation Needed was translated"
    );
    // The pod learned the path MTU: 1280 + 20.
    let route = w
        .pod
        .ns
        .exec("ip", &["-6", "route", "get", &server6().to_string()])
        .unwrap();
    assert!(route.contains("mtu 1300"), "{route}");
}

/// A pod's port unreachable quoting a full-sized datagram (a 1280-byte ICMPv6 error) reaches
/// the IPv4 server as an ICMPv4 error of at most 576 bytes (RFC 1812 §4.3.2.3) with a valid
/// checksum, which the server's kernel matches to its socket (the quote's port mapped back).
#[test]
fn a_pods_full_sized_icmp_error_reaches_the_server_cut_to_576_bytes() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let icmp = w.net.inet.enter(RawIcmp::open).unwrap();
    let server = w
        .net
        .inet
        .enter(|| UdpSocket::bind((SERVER4, 9998)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let pod = w.pod.ns.enter(|| UdpSocket::bind((POD_A, 0))).unwrap();
    pod.send_to(b"open", (server6(), 9998)).unwrap();
    let mut b = [0u8; 64];
    let (_, binding) = server.recv_from(&mut b).unwrap();
    // Nothing listens on the pod's port from here on.
    drop(pod);
    server.connect(binding).unwrap();
    let before = count(&w.layout, Reason::Nat64IcmpErrOut);
    server.send(&[0x5a; 1400]).unwrap();
    let err = icmp
        .next(Duration::from_secs(3), |p| {
            p[12..16] == n::NODE4.octets() && p[20..22] == [3, 3]
        })
        .expect("no port unreachable reached the server");
    let total = usize::from(u16::from_be_bytes([err[2], err[3]]));
    assert_eq!(total, err.len(), "outer Total Length");
    assert_eq!(total, 576, "cut to 576 bytes");
    assert!(
        sixlane_testkit::packet::checksum::verifies(&err[20..], 0),
        "ICMPv4 checksum over the cut message"
    );
    assert_eq!(count(&w.layout, Reason::Nat64IcmpErrOut) - before, 1);
    let refused = server.recv(&mut b).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A raw ICMPv4 socket: every ICMPv4 packet its namespace receives, IPv4 header included.
struct RawIcmp(OwnedFd);

impl RawIcmp {
    fn open() -> std::io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned (and closed) by `Self`.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// The first packet `want` accepts within `window`.
    fn next(&self, window: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + window;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                continue;
            }
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::recv(pfd.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 22 && want(&buf[..n as usize]) {
                return Some(buf[..n as usize].to_vec());
            }
        }
        None
    }
}

#[test]
fn a_hundred_concurrent_sessions() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let _server = EchoServer::start(&w.net.inet, SocketAddr::from((SERVER4, 7000)));
    let to = SocketAddr::from((server6(), 7000));
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|i| connect(&w.pod.ns, to).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // All open at once: each carries traffic.
    for (i, c) in conns.iter_mut().enumerate() {
        round_trip(c, format!("session {i}\n").as_bytes()).unwrap();
    }
    let sessions = state::sessions(&w.layout).unwrap();
    let tcp: Vec<_> = sessions
        .iter()
        .filter(|(k, _)| k.dir == DIR_OUT && k.proto == n::TCP && k.remote_port == 7000)
        .collect();
    assert_eq!(tcp.len(), 100, "one session per connection");
    let ports: std::collections::HashSet<u16> = tcp.iter().map(|(_, v)| v.port).collect();
    assert_eq!(ports.len(), 100, "distinct pool ports");
    for c in &mut conns {
        round_trip(c, b"again\n").unwrap();
    }
}

/// The agent restarts (or upgrades): a new load reuses the pinned maps, the links switch
/// programs atomically, and an established connection carries on.
#[test]
fn long_lived_tcp_survives_an_agent_restart() {
    let mut w = world(&cfg(Span::new(61001, 65535)));
    let _server = EchoServer::start(&w.net.inet, SocketAddr::from((SERVER4, 7001)));
    let mut c = connect(&w.pod.ns, SocketAddr::from((server6(), 7001))).unwrap();
    round_trip(&mut c, b"before restart\n").unwrap();
    let before = state::bindings(&w.layout).unwrap();
    // The old agent goes away; its programs stay attached through the pinned links.
    drop(w.dp.take());
    round_trip(&mut c, b"agent down\n").unwrap();
    let mut dp = Datapath::load(&w.layout, &LoadOptions::default()).unwrap();
    // The upgrade runs in the node's namespace, where the pod's tc filters are.
    let report = w.node.enter(|| dp.repoint_attachments()).unwrap();
    // The uplink programs' pinned links and the pod's two filters (the plugin's default mode)
    // switched to the new load.
    assert_eq!(report.tcx.replaced, UPLINK_PROGRAMS.len(), "{report:?}");
    assert_eq!(report.tc.replaced, 2, "{report:?}");
    w.dp = Some(dp);
    for i in 0..20 {
        round_trip(&mut c, format!("after restart {i}\n").as_bytes()).unwrap();
    }
    assert_eq!(
        state::bindings(&w.layout).unwrap().len(),
        before.len(),
        "bindings kept"
    );
}

#[test]
fn port_range_exhaustion_refuses_new_flows_and_keeps_old_ones() {
    let w = world(&cfg(Span::new(61001, 61002)));
    let _server = EchoServer::start(&w.net.inet, SocketAddr::from((SERVER4, 7002)));
    let to = SocketAddr::from((server6(), 7002));
    let mut a = connect(&w.pod.ns, to).unwrap();
    let mut b = connect(&w.pod.ns, to).unwrap();
    round_trip(&mut a, b"a\n").unwrap();
    round_trip(&mut b, b"b\n").unwrap();
    // The third connection is refused at once with an ICMPv6 error, not left to time out.
    let t = Instant::now();
    let err = connect(&w.pod.ns, to).expect_err("pool exhausted");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "refused promptly ({:?}): {err}",
        t.elapsed()
    );
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
    assert!(count(&w.layout, Reason::Nat64PoolExhausted) >= 1);
    round_trip(&mut a, b"a still works\n").unwrap();
    round_trip(&mut b, b"b still works\n").unwrap();
}

/// No open relay: a source outside the pod CIDRs is never translated.
#[test]
fn spoofed_source_outside_the_pod_cidrs_is_not_translated() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let server = w
        .net
        .inet
        .enter(|| UdpSocket::bind((SERVER4, 9999)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let spoofed: Ipv6Addr = "fd00:99::1".parse().unwrap();
    w.pod
        .ns
        .ip(&[
            "addr",
            "add",
            &format!("{spoofed}/128"),
            "dev",
            w.pod.pod_if(),
            "nodad",
        ])
        .unwrap();
    // Source validation drops it at the pod's veth first (docs/cni.md); with the pod opted
    // out, NAT64's own check of the pod CIDRs does.
    let s = w.pod.ns.enter(|| UdpSocket::bind((spoofed, 0))).unwrap();
    let mut b = [0u8; 64];
    // A datagram from its own address first resolves the gateway: a solicitation's source is
    // the waiting packet's, and one from the spoofed address would be dropped too.
    let ok = w.pod.ns.enter(|| UdpSocket::bind((POD_A, 0))).unwrap();
    ok.send_to(b"warm", (server6(), 9999)).unwrap();
    server.recv_from(&mut b).unwrap();
    for (opted_out, reason) in [(false, Reason::SrcSpoofed), (true, Reason::Nat64SrcDenied)] {
        if opted_out {
            let mut t = Sources::open(&w.layout).unwrap().unwrap();
            let veth = *t.entries().unwrap().keys().next().unwrap();
            t.record(veth, &[POD_A], false).unwrap();
        }
        let before = count(&w.layout, reason);
        for _ in 0..3 {
            s.send_to(b"spoofed", (server6(), 9999)).unwrap();
        }
        assert!(
            server.recv_from(&mut b).is_err(),
            "the spoofed datagram reached the IPv4 server"
        );
        assert_eq!(count(&w.layout, reason) - before, 3, "{reason:?}");
    }
    // The pod's own address still works.
    ok.send_to(b"legit", (server6(), 9999)).unwrap();
    let (n, from) = server.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"legit");
    assert_eq!(
        from.ip(),
        IpAddr::V4(n::NODE4),
        "arrives from the pool address"
    );
}

/// A node without IPv4 (route mode: no translation, the prefix routed to a translating node)
/// gives its pods NAT64 through the other node.
#[test]
fn node_without_ipv4_routes_the_prefix_to_a_nat64_node() {
    // Node B translates; node A has no IPv4 at all.
    let w = world(&cfg(Span::new(61001, 65535)));
    let (pins_a, layout_a, _dp_a) = load_datapath();
    let route_mode = Nat64Config {
        mode: sixlane_agent::nat64::Mode::Route,
        prefix: PREFIX.parse().unwrap(),
        gateway: Some("fd00:1::b".parse().unwrap()),
        ..Default::default()
    };
    n::apply(&layout_a, &route_mode);
    let node_a = sim::node().unwrap();
    let link = sixlane_testkit::Veth::new(Some(&node_a), Some(&w.node)).unwrap();
    link.a
        .ip(&["addr", "add", "fd00:1::a/64", "dev", "{}", "nodad"])
        .unwrap();
    link.b
        .ip(&["addr", "add", "fd00:1::b/64", "dev", "{}", "nodad"])
        .unwrap();
    let pod_a: Ipv6Addr = "fd00:20::a".parse().unwrap();
    let pod = SimPod::attach(&node_a, pod_a, Some(&layout_a)).unwrap();
    // The configuration: A routes the prefix to B; B routes A's pod CIDR back.
    node_a
        .ip(&[
            "-6",
            "route",
            "add",
            PREFIX,
            "via",
            &route_mode.gateway.unwrap().to_string(),
        ])
        .unwrap();
    w.node
        .ip(&["-6", "route", "add", "fd00:20::/64", "via", "fd00:1::a"])
        .unwrap();
    // B's uplink programs see A's traffic on the link between the nodes.
    n::attach_uplink(&w.node, &w.layout, &link.b.name);
    let _srv = HttpServer::start(
        &w.net.inet,
        SocketAddr::from((SERVER4, 8080)),
        b"via node B".to_vec(),
    );
    let out = pod
        .ns
        .exec_output(
            "curl",
            &[
                "-6",
                "-sS",
                "--max-time",
                "10",
                &format!("http://[{}]:8080/", server6()),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"via node B");
    // A did not translate (route mode); B did, for A's pod.
    assert_eq!(count(&layout_a, Reason::Nat64Out), 0);
    let sessions = state::sessions(&w.layout).unwrap();
    assert!(
        sessions
            .iter()
            .any(|(k, _)| k.dir == DIR_OUT && Ipv6Addr::from(k.addr) == pod_a)
    );
    drop(pod);
    drop(link);
    drop(node_a);
    drop(pins_a);
}

/// DNS64: an A-only name resolves to an AAAA in the prefix (a real unbound with its dns64
/// module), and the pod fetches from it by name.
#[test]
fn dns64_name_resolves_into_the_prefix_and_the_pod_fetches_by_name() {
    let w = world(&cfg(Span::new(61001, 65535)));
    let _srv = HttpServer::start(
        &w.net.inet,
        SocketAddr::from((SERVER4, 8080)),
        b"fetched by name".to_vec(),
    );
    // The IPv4 internet's DNS: A records only.
    let auth_addr: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 53));
    w.net
        .wan
        .b
        .ip(&["addr", "add", "198.18.1.53/24", "dev", "{}"])
        .unwrap();
    let _auth = dns64::Unbound::authority(
        &w.net.inet,
        auth_addr,
        "example.test.",
        &[("web.example.test.", IpAddr::V4(SERVER4))],
    )
    .unwrap();
    // The cluster's DNS64 resolver on the node (reachable from pods), IPv4 to the authority.
    let dns_addr: Ipv6Addr = "fd00:53::53".parse().unwrap();
    w.node
        .ip(&["addr", "add", &format!("{dns_addr}/128"), "dev", "lo"])
        .unwrap();
    let resolver = dns64::Unbound::dns64(
        &w.node,
        IpAddr::V6(dns_addr),
        PREFIX,
        &[("example.test.", auth_addr)],
    )
    .unwrap();
    let out = w
        .pod
        .ns
        .exec(
            "dig",
            &[
                "+short",
                "+time=3",
                "+tries=2",
                &format!("@{dns_addr}"),
                "AAAA",
                "web.example.test",
            ],
        )
        .unwrap();
    assert_eq!(
        out.trim(),
        server6().to_string(),
        "synthesized AAAA in the prefix"
    );
    let resolv = resolver.resolv_conf().unwrap();
    let out = dns64::with_resolver(
        &w.pod.ns,
        &resolv,
        "curl",
        &[
            "-6",
            "-sS",
            "--max-time",
            "10",
            "http://web.example.test:8080/",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "curl by name: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"fetched by name");
}

/// The Well-Known Prefix refuses non-global IPv4 (RFC 6052 §3.1): the pod is told at once.
#[test]
fn well_known_prefix_refuses_the_simulated_internet() {
    let c = n::config(
        "64:ff9b::/96",
        &[n::NODE4],
        &["fd00:10::/64"],
        Span::new(61001, 65535),
    );
    let w = world(&c);
    let dst = n::embed96("64:ff9b::".parse().unwrap(), SERVER4);
    let out = w
        .pod
        .ns
        .exec_output(
            "ping",
            &["-6", "-n", "-c", "1", "-W", "2", &dst.to_string()],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("Destination unreachable") && text.contains("prohibited"),
        "{text}"
    );
    assert!(count(&w.layout, Reason::Nat64DstRefused) >= 1);
}
