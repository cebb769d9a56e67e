//! NAT64 static bindings end to end: the real `sixlane-agent`, configured with
//! `nat64.staticBindings`, lets an IPv4 host open TCP, send UDP and ping through the node's pool
//! address to an IPv6-only pod; the bindings and the connections through them survive an agent
//! killed and started again, and a binding removed from the configuration goes from the map.
//! Another pod of the node reaches the bound pod through the same pool address and port, by
//! way of the prefix (hairpinning, RFC 6146 §3.8).
//!
//! ```text
//!  pod (fd00:10::a) ─veth─ node ─up─ rtr ─wan─ inet (198.18.1.10: the IPv4 client)
//!                     pool 198.18.0.1, prefix fd00:6464::/96, agent in static mode
//! ```

use std::{
    fs,
    net::{Ipv6Addr, SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use nix::sys::signal::Signal;
use sixlane_agent::{PinLayout, metrics, nat64::statics};
use sixlane_common::{
    layout::UPLINK_PROGRAMS,
    metrics::{Direction, Reason},
};
use sixlane_testkit::{ChildGuard, NetNs};
use sixlane_tests::{
    agentproc::{AgentRun, wait_until},
    bins,
    echo::{EchoServer, connect, round_trip},
    nat64::{self as n, NODE4, SERVER4, agent::AgentNode},
    sim::SimPod,
};

const POD_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xa);
const POD_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xb);
const NODE6: &str = "fd00:99::1";

/// The agent's configuration: static mode, NAT64 translating with the given static bindings
/// (YAML flow mappings).
fn agent_yaml(uplink: &str, bindings: &[&str]) -> String {
    let list: String = bindings.iter().map(|b| format!("\n  - {b}")).collect();
    format!(
        "node:\n  uplink: {uplink}\n  address: \"{NODE6}\"\n\
         cni:\n  checkBinaries: false\n  mtu: 1500\nhealthz:\n  kubeProxyListen: null\n\
         nat64:\n  mode: translate\n  prefix: fd00:6464::/96\n  pool: [\"{NODE4}\"]\n\
         \x20 podCIDRs: [fd00:10::/64]\n  ports: 61001-65535\n  staticBindings:{list}\n"
    )
}

const TCP: &str = r#"{protocol: tcp, ipv4: "198.18.0.1:8080", ipv6: "[fd00:10::a]:80"}"#;
const UDP: &str = r#"{protocol: udp, ipv4: "198.18.0.1:5300", ipv6: "[fd00:10::a]:53"}"#;
const ICMP: &str = r#"{protocol: icmp, ipv4: "198.18.0.1:7", ipv6: "[fd00:10::a]:7"}"#;

fn count(layout: &PinLayout, r: Reason) -> u64 {
    metrics::get(&metrics::read(layout).unwrap(), Direction::Ingress, r).packets
}

fn static_entries(layout: &PinLayout) -> usize {
    statics::read(layout).map_or(0, |v| v.len())
}

/// Starts the agent for the `nth` time (its log is appended to) and waits until it has
/// programmed NAT64, with `entries` static binding entries, and attached its uplink programs.
fn start(
    run: &AgentRun,
    node: &NetNs,
    layout: &PinLayout,
    nth: usize,
    entries: usize,
) -> ChildGuard {
    let proc = run.spawn(node);
    let log = run.log();
    wait_until("the agent to program NAT64", &log, || {
        fs::read_to_string(&log).is_ok_and(|l| {
            l.matches("NAT64 configured").count() == nth
                && l.matches("uplink program attached").count() == nth * UPLINK_PROGRAMS.len()
        }) && static_entries(layout) == entries
    });
    proc
}

/// Kills the agent the hard way: no shutdown path runs.
fn kill(mut proc: ChildGuard) {
    proc.signal(Signal::SIGKILL).unwrap();
    proc.wait_timeout(Duration::from_secs(10)).unwrap();
}

/// `ping -e 7` from the IPv4 host to the pool address: whether an answer came.
fn ping(inet: &NetNs) -> bool {
    let out = inet
        .exec_output(
            "ping",
            &[
                "-n",
                "-c",
                "2",
                "-i",
                "0.2",
                "-w",
                "3",
                "-e",
                "7",
                &NODE4.to_string(),
            ],
        )
        .unwrap();
    out.status.success()
}

/// One datagram from the IPv4 host to POOL:5300, answered by the pod's socket on port 53.
fn udp_exchange(client: &UdpSocket, pod: &UdpSocket) -> std::io::Result<SocketAddr> {
    client.send_to(b"query", (NODE4, 5300))?;
    let mut b = [0u8; 64];
    let (len, from) = pod.recv_from(&mut b)?;
    assert_eq!(&b[..len], b"query");
    pod.send_to(b"answer", from)?;
    let (len, back) = client.recv_from(&mut b)?;
    assert_eq!(
        (&b[..len], back),
        (&b"answer"[..], SocketAddr::from((NODE4, 5300)))
    );
    Ok(from)
}

#[test]
fn ipv4_hosts_reach_a_pod_through_static_bindings_across_agent_restarts() {
    let n = AgentNode::new('s', NODE6, "fd00:10::/64");
    let (layout, node, net, run) = (&n.layout, &n.node, &n.net, &n.run);
    let write_cfg = |bindings: &[&str]| {
        fs::write(run.config(), agent_yaml(net.uplink(), bindings)).unwrap();
    };
    write_cfg(&[TCP, UDP, ICMP]);
    let agent = start(run, node, layout, 1, 6);
    let pod = SimPod::attach(node, POD_A, Some(layout)).unwrap();

    // TCP: the IPv4 host connects to the pool address; the pod's server answers.
    let _server = EchoServer::start(&pod.ns, SocketAddr::from((POD_A, 80)));
    let before = count(layout, Reason::Nat64InStatic);
    let to = SocketAddr::from((NODE4, 8080));
    let mut c = connect(&net.inet, to).unwrap_or_else(|e| {
        panic!(
            "connecting to {to}: {e}; agent log:\n{}",
            fs::read_to_string(run.log()).unwrap_or_default()
        )
    });
    round_trip(&mut c, b"through a static binding\n").unwrap();
    assert_eq!(
        count(layout, Reason::Nat64InStatic) - before,
        1,
        "one SYN opened"
    );

    // UDP: the pod sees the client as Pref64::client and answers from port 53.
    let client = net.inet.enter(|| UdpSocket::bind((SERVER4, 0))).unwrap();
    let pod_udp = pod.ns.enter(|| UdpSocket::bind((POD_A, 53))).unwrap();
    for s in [&client, &pod_udp] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let from = udp_exchange(&client, &pod_udp).unwrap();
    let client6 = n::embed96("fd00:6464::".parse().unwrap(), SERVER4);
    assert_eq!(from.ip(), client6);

    // Echo: the pod answers the ping (with its echo replies off, nobody does).
    assert!(ping(&net.inet), "ping through the static ICMP binding");
    pod.ns.sysctl("net.ipv6.icmp.echo_ignore_all", "1").unwrap();
    assert!(
        !ping(&net.inet),
        "the node answered a ping meant for the pod"
    );
    pod.ns.sysctl("net.ipv6.icmp.echo_ignore_all", "0").unwrap();

    // The CLI lists the static bindings beside the dynamic ones.
    let rows = bins::agent_json(layout.root(), &["nat64", "bindings"]);
    let rows = rows.as_array().unwrap();
    for (proto, port) in [("tcp", 8080), ("udp", 5300), ("icmp", 7)] {
        assert!(
            rows.iter().any(|r| r["kind"] == "static"
                && r["proto"] == proto
                && r["pool_port"] == port
                && r["pod"] == POD_A.to_string()),
            "{proto} {port} in {rows:?}"
        );
    }

    // The agent dies and comes back: the connection carries on, the bindings are there.
    kill(agent);
    round_trip(&mut c, b"agent down\n").unwrap();
    let agent = start(run, node, layout, 2, 6);
    for i in 0..10 {
        round_trip(&mut c, format!("after restart {i}\n").as_bytes()).unwrap();
    }
    udp_exchange(&client, &pod_udp).unwrap();

    // The UDP binding leaves the configuration: gone from the map at the next start, and the
    // pool port is the node's again (nothing listens there: refused).
    kill(agent);
    write_cfg(&[TCP, ICMP]);
    let _agent = start(run, node, layout, 3, 4);
    assert!(
        statics::read(layout)
            .unwrap()
            .iter()
            .all(|(k, _)| k.proto != n::UDP),
        "the UDP binding is still in the map"
    );
    client.connect((NODE4, 5300)).unwrap();
    client.send(b"query").unwrap();
    let mut b = [0u8; 64];
    let e = client.recv(&mut b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    round_trip(&mut c, b"the TCP binding stayed\n").unwrap();
    assert_static_rows(layout.root(), 2);
}

/// `sixlane-agent nat64 bindings` lists `n` static bindings.
fn assert_static_rows(root: &Path, n: usize) {
    let rows = bins::agent_json(root, &["nat64", "bindings"]);
    let statics = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "static")
        .count();
    assert_eq!(statics, n, "{rows}");
}

const TCP_B: &str = r#"{protocol: tcp, ipv4: "198.18.0.1:8080", ipv6: "[fd00:10::b]:80"}"#;
const UDP_B: &str = r#"{protocol: udp, ipv4: "198.18.0.1:5300", ipv6: "[fd00:10::b]:53"}"#;

/// Hairpinning end to end: pod A reaches pod B's static bindings through
/// `[Pref64::<pool address>]:port`, by TCP and UDP, and B sees A as Pref64::<pool address> with
/// A's pool port; B's port unreachable reaches A's socket; a ping to the pool address through
/// the prefix is answered.
#[test]
fn a_pod_reaches_another_through_its_static_binding_by_the_prefix() {
    let n = AgentNode::new('h', NODE6, "fd00:10::/64");
    let (layout, node, net, run) = (&n.layout, &n.node, &n.net, &n.run);
    fs::write(run.config(), agent_yaml(net.uplink(), &[TCP_B, UDP_B])).unwrap();
    let _agent = start(run, node, layout, 1, 4);
    let a = SimPod::attach(node, POD_A, Some(layout)).unwrap();
    let b = SimPod::attach(node, POD_B, Some(layout)).unwrap();
    let pool6 = n::embed96("fd00:6464::".parse().unwrap(), NODE4);

    // TCP: A connects to [Pref64::pool]:8080, B's server on port 80 answers.
    let server =
        b.ns.enter(|| std::net::TcpListener::bind((POD_B, 80)))
            .unwrap();
    let before = count(layout, Reason::Nat64Hairpin);
    let to = SocketAddr::from((pool6, 8080));
    let mut c = connect(&a.ns, to).unwrap_or_else(|e| {
        panic!(
            "connecting to {to}: {e}; agent log:\n{}",
            fs::read_to_string(run.log()).unwrap_or_default()
        )
    });
    let (mut conn, peer) = server.accept().unwrap();
    // B sees A as the pool address (Pref64::T) and A's pool port (dynamic range).
    assert_eq!(peer.ip(), pool6);
    assert!(peer.port() >= 61001, "A's pool port {}", peer.port());
    std::thread::spawn(move || {
        let mut b = [0u8; 256];
        use std::io::{Read as _, Write as _};
        while let Ok(n) = conn.read(&mut b) {
            if n == 0 || conn.write_all(&b[..n]).is_err() {
                break;
            }
        }
    });
    for i in 0..5 {
        round_trip(&mut c, format!("hairpin {i}\n").as_bytes()).unwrap();
    }
    let hairpinned = count(layout, Reason::Nat64Hairpin) - before;
    assert!(hairpinned >= 10, "{hairpinned} packets hairpinned");

    // UDP: A's datagram to [Pref64::pool]:5300 reaches B's port 53 from [Pref64::pool]:t1, and
    // B's answer comes back from [Pref64::pool]:5300.
    let sa = a.ns.enter(|| UdpSocket::bind((POD_A, 0))).unwrap();
    let sb = b.ns.enter(|| UdpSocket::bind((POD_B, 53))).unwrap();
    for s in [&sa, &sb] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    sa.send_to(b"query", (pool6, 5300)).unwrap();
    let mut buf = [0u8; 64];
    let (len, from) = sb.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..len], from.ip()),
        (&b"query"[..], std::net::IpAddr::V6(pool6))
    );
    sb.send_to(b"answer", from).unwrap();
    let (len, back) = sa.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..len], back),
        (&b"answer"[..], SocketAddr::from((pool6, 5300)))
    );

    // B's port unreachable about a hairpinned datagram reaches A's socket, translated back.
    drop(sb);
    sa.connect((pool6, 5300)).unwrap();
    sa.send(b"nobody").unwrap();
    let e = sa.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    // The pool address answers pings through the prefix (for the node).
    let before = count(layout, Reason::Nat64HairpinEcho);
    let out =
        a.ns.exec_output(
            "ping",
            &[
                "-6",
                "-n",
                "-c",
                "2",
                "-i",
                "0.2",
                "-w",
                "5",
                &pool6.to_string(),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(count(layout, Reason::Nat64HairpinEcho) - before, 2);
    // Nothing hairpinned went out of the uplink as IPv4 to the node's own address.
    assert_eq!(count(layout, Reason::Nat64NoRoute), 0);
}
