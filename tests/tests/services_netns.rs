//! The service datapath with real traffic: two simulated nodes joined by a LAN (bridge), pods
//! attached through `SimPod` (the CNI plugin's plumbing, pod programs on the host veth), the
//! uplink programs on each node's uplink, maps programmed by each node's `Programmer`.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv6Addr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use sixlane_agent::{
    PinLayout,
    loader::{Datapath, LoadOptions},
    metrics,
    model::{Backend, DesiredState, NodeState, Service, TrafficPolicy},
    services::Programmer,
};
use sixlane_common::{
    layout::Hook,
    metrics::{Direction, Reason},
};
use sixlane_tests::{
    bins,
    cluster::{self, EXT, Nginx, SimCluster, curl, node_addr, pod_addr},
    echo::{self, EchoServer, Pinger, exchange},
    podattach::{program_ids, sixlane_filters},
    sim::SimPod,
    svc::{backend, service},
};

const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 1);

/// The node-specific view of a cluster-wide service list: `local` set for backends in node
/// `i`'s pod range.
fn desired_for(i: u16, services: &[Service]) -> DesiredState {
    let mine = |a: &Ipv6Addr| a.segments()[1] == i * 0x10;
    let services = services
        .iter()
        .cloned()
        .map(|mut s| {
            for p in &mut s.ports {
                for b in &mut p.backends {
                    b.local = mine(&b.addr);
                }
            }
            (s.id.clone(), s)
        })
        .collect();
    DesiredState {
        node: NodeState {
            name: format!("node{i}"),
            addresses: vec![node_addr(i)],
            cluster_ips_from_outside: false,
        },
        services,
    }
}

/// Programs every node of `c` with `services`.
fn program(c: &SimCluster, services: &[Service]) {
    for n in &c.nodes {
        let r = Programmer::open(&n.layout)
            .unwrap()
            .apply(&desired_for(n.index, services))
            .unwrap();
        assert!(r.skipped.is_empty(), "{r:?}");
    }
}

fn count(layout: &PinLayout, dir: Direction, reason: Reason) -> u64 {
    metrics::get(&metrics::read(layout).unwrap(), dir, reason).packets
}

#[test]
fn http_through_a_clusterip_to_local_and_remote_backends() {
    let c = cluster::cluster(2);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let client = SimPod::attach(&n1.ns, pod_addr(1, 0xc), Some(&n1.layout)).unwrap();
    let b1 = SimPod::attach(&n1.ns, pod_addr(1, 0xb1), Some(&n1.layout)).unwrap();
    let b2 = SimPod::attach(&n2.ns, pod_addr(2, 0xb2), Some(&n2.layout)).unwrap();
    let client2 = SimPod::attach(&n2.ns, pod_addr(2, 0xc), Some(&n2.layout)).unwrap();
    let _w1 = Nginx::start(&b1.ns, "b1", 8080);
    let _w2 = Nginx::start(&b2.ns, "b2", 8080);
    program(
        &c,
        &[service(
            "web",
            VIP,
            80,
            vec![backend(b1.addr, 8080, false), backend(b2.addr, 8080, false)],
        )],
    );

    let url = format!("http://[{VIP}]/");
    for (who, pod) in [
        ("node1 client", &client),
        ("node2 client", &client2),
        ("b1 (hairpin)", &b1),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..24 {
            let body = curl(&pod.ns, &url, 5).unwrap_or_else(|e| panic!("{who}: {e}"));
            let mut it = body.split_whitespace();
            let name = it.next().unwrap().to_owned();
            let peer: Ipv6Addr = it.next().unwrap().parse().unwrap();
            // Pod clients keep their address (hairpin: the backend sees the ClusterIP).
            let want_peer = if name == "b1" && pod.addr == b1.addr {
                VIP
            } else {
                pod.addr
            };
            assert_eq!(peer, want_peer, "{who}: {body}");
            seen.insert(name);
        }
        assert_eq!(
            seen.len(),
            2,
            "{who} reached {seen:?}: local and remote backends"
        );
    }
    // Node 1 translated its client's flows and b1's (b1's own ones through the hairpin).
    assert!(count(&n1.layout, Direction::Ingress, Reason::SvcNew) >= 24);
    assert!(count(&n1.layout, Direction::Ingress, Reason::SvcHairpin) > 0);
    // Replies to its client (from b1's veth and, for b2, from the uplink) and the client's
    // later packets to b1 went straight into the pods (the pod fast path).
    assert!(count(&n1.layout, Direction::Ingress, Reason::SvcPeer) > 0);

    // A ClusterIP answers ping; a port it does not serve is not answered by anything.
    client
        .ns
        .exec(
            "ping",
            &["-6", "-c", "2", "-i", "0.2", "-w", "5", &VIP.to_string()],
        )
        .expect("ping the ClusterIP");
    assert!(count(&n1.layout, Direction::Ingress, Reason::SvcEchoReply) >= 2);

    // The CLI reads the pinned maps (no daemon involved).
    let agent = bins::path("sixlane-agent");
    let root = n1.layout.root().to_string_lossy().into_owned();
    let rows = bins::agent_json(n1.layout.root(), &["services"]);
    let cip = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ClusterIP")
        .expect("ClusterIP row");
    assert_eq!(cip["service"], "test/web/tcp");
    assert_eq!(cip["backends"].as_array().unwrap().len(), 2);
    let flows = bins::agent_json(n1.layout.root(), &["conntrack"]);
    assert!(
        flows
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["service"] == "test/web/tcp" && f["direction"] == "forward"),
        "{flows}"
    );
    let out = std::process::Command::new(&agent)
        .args(["--pin-root", &root, "conntrack"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("test/web/tcp"));
}

#[test]
fn nodeport_from_outside_with_both_traffic_policies() {
    let c = cluster::cluster(2);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let b1 = SimPod::attach(&n1.ns, pod_addr(1, 0xb1), Some(&n1.layout)).unwrap();
    let b2 = SimPod::attach(&n2.ns, pod_addr(2, 0xb2), Some(&n2.layout)).unwrap();
    let _w1 = Nginx::start(&b1.ns, "b1", 8080);
    let _w2 = Nginx::start(&b2.ns, "b2", 8080);
    let mut cluster_policy = service(
        "np",
        "fd00:96::10".parse().unwrap(),
        80,
        vec![backend(b2.addr, 8080, false)],
    );
    cluster_policy.ports[0].node_port = Some(30080);
    let mut local_policy = service(
        "npl",
        "fd00:96::11".parse().unwrap(),
        80,
        vec![backend(b1.addr, 8080, false)],
    );
    local_policy.ports[0].node_port = Some(30081);
    local_policy.external_traffic_policy = TrafficPolicy::Local;
    program(&c, &[cluster_policy, local_policy]);

    // Cluster policy, backend on the other node: SNAT to node1, so b2 sees node1.
    for _ in 0..5 {
        let body = curl(&c.ext, &format!("http://[{}]:30080/", node_addr(1)), 5).unwrap();
        assert_eq!(body.trim(), format!("b2 {}", node_addr(1)));
    }
    assert!(count(&n1.layout, Direction::Ingress, Reason::SvcReverse) >= 5);
    // Local policy on the node with the backend: the client address is kept.
    for _ in 0..5 {
        let body = curl(&c.ext, &format!("http://[{}]:30081/", node_addr(1)), 5).unwrap();
        assert_eq!(body.trim(), format!("b1 {EXT}"));
    }
    assert!(count(&n1.layout, Direction::Egress, Reason::SvcReverse) >= 5);
    // Local policy on a node without one: dropped there (counted), as kube-proxy does.
    let before = count(&n2.layout, Direction::Ingress, Reason::SvcNoLocalBackend);
    let err = curl(&c.ext, &format!("http://[{}]:30081/", node_addr(2)), 2).unwrap_err();
    assert!(err.contains("28"), "expected a timeout: {err}");
    assert!(count(&n2.layout, Direction::Ingress, Reason::SvcNoLocalBackend) > before);
    // Cluster policy through node2 reaches the backend there without SNAT.
    let body = curl(&c.ext, &format!("http://[{}]:30080/", node_addr(2)), 5).unwrap();
    assert_eq!(body.trim(), format!("b2 {EXT}"));
}

#[test]
fn no_endpoint_is_refused_at_once() {
    let c = cluster::cluster(1);
    let n1 = &c.nodes[0];
    let client = SimPod::attach(&n1.ns, pod_addr(1, 0xc), Some(&n1.layout)).unwrap();
    program(&c, &[service("empty", VIP, 80, vec![])]);
    let start = Instant::now();
    let err = client
        .ns
        .enter(|| TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(5)))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // The first error can reach the socket while connect() still holds it (it is answered
    // within the SYN's own transmission), which Linux only records; the retransmitted SYN's
    // error then aborts the connect. Either way well before a timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(count(&n1.layout, Direction::Ingress, Reason::SvcNoBackend) >= 1);
}

#[test]
fn long_lived_connection_survives_loader_restart_and_upgrade() {
    let mut c = cluster::cluster(2);
    let client =
        SimPod::attach(&c.nodes[0].ns, pod_addr(1, 0xc), Some(&c.nodes[0].layout)).unwrap();
    let b2 = SimPod::attach(&c.nodes[1].ns, pod_addr(2, 0xb2), Some(&c.nodes[1].layout)).unwrap();
    let server = EchoServer::start(&b2.ns, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)));
    let services = [service(
        "echo",
        VIP,
        80,
        vec![backend(b2.addr, 8080, false)],
    )];
    program(&c, &services);

    let vip = SocketAddr::from((VIP, 80));
    let mut s = echo::connect(&client.ns, vip).expect("connect through the ClusterIP");
    exchange(&mut s, b"before");

    // Keep traffic flowing on a second connection during the restart: every round trip must
    // complete.
    let pinger = Pinger::start(echo::connect(&client.ns, vip).unwrap());

    let n1 = &mut c.nodes[0];
    let host_if = client.host_if().to_owned();
    // The client pod is attached in the plugin's default mode (tc filters).
    let old = program_ids(&n1.ns, &host_if, Hook::Ingress);
    assert_eq!(sixlane_filters(&n1.ns, &host_if, Hook::Ingress).len(), 1);
    // The loader goes away and comes back on the same pins (a restart), then switches every
    // link and, in the node's namespace where the pod veths are, every tc filter to its programs
    // (an upgrade): maps, conntrack included, are reused.
    drop(n1.dp.take());
    thread::sleep(Duration::from_millis(200));
    let mut dp = Datapath::load(&n1.layout, &LoadOptions::default()).unwrap();
    let report = n1.ns.enter(|| dp.repoint_attachments()).unwrap();
    // Node 1: the 2 uplink programs through pinned links, the client pod's 2 programs as filters.
    assert_eq!(report.tcx.replaced, 2, "{report:?}");
    assert_eq!(report.tc.replaced, 2, "{report:?}");
    let want = dp
        .classifier(sixlane_common::layout::PROG_FROM_POD)
        .unwrap()
        .info()
        .unwrap()
        .id();
    n1.dp = Some(dp);
    let new = program_ids(&n1.ns, &host_if, Hook::Ingress);
    assert_eq!(new.len(), 1, "one program per hook");
    assert_ne!(new, old, "the filter runs the new program");
    assert_eq!(new, [want]);
    // A restarted programmer finds everything in place.
    let r = Programmer::open(&n1.layout)
        .unwrap()
        .apply(&desired_for(1, &services))
        .unwrap();
    assert_eq!((r.writes, r.deletes), (0, 0), "{r:?}");

    exchange(&mut s, b"after the restart");
    thread::sleep(Duration::from_millis(200));
    assert!(
        pinger.finish() > 20,
        "round trips kept completing during the restart"
    );
    exchange(&mut s, b"still there");
    drop(s);
    drop(server);
}

/// Sequential HTTP requests through the ClusterIP while the endpoints change underneath:
/// a backend is added, one goes terminating then away (its pod keeps running, as during a
/// rollout), another comes back. No request may fail.
#[test]
fn backend_change_under_load_without_errors() {
    let c = cluster::cluster(2);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let client = SimPod::attach(&n1.ns, pod_addr(1, 0xc), Some(&n1.layout)).unwrap();
    let b1 = SimPod::attach(&n1.ns, pod_addr(1, 0xb1), Some(&n1.layout)).unwrap();
    let b2 = SimPod::attach(&n2.ns, pod_addr(2, 0xb2), Some(&n2.layout)).unwrap();
    let b3 = SimPod::attach(&n2.ns, pod_addr(2, 0xb3), Some(&n2.layout)).unwrap();
    let _w = [
        Nginx::start(&b1.ns, "b1", 8080),
        Nginx::start(&b2.ns, "b2", 8080),
        Nginx::start(&b3.ns, "b3", 8080),
    ];
    let ready = |p: &SimPod| backend(p.addr, 8080, false);
    let terminating = |p: &SimPod| Backend {
        ready: false,
        terminating: true,
        ..backend(p.addr, 8080, false)
    };
    let steps: Vec<Vec<Backend>> = vec![
        vec![ready(&b1), ready(&b2)],
        vec![ready(&b1), ready(&b2), ready(&b3)],
        vec![terminating(&b1), ready(&b2), ready(&b3)],
        vec![ready(&b2), ready(&b3)],
        vec![terminating(&b2), ready(&b3)],
        vec![ready(&b3), ready(&b1)],
        vec![terminating(&b3), terminating(&b1)],
        vec![ready(&b1), ready(&b2), ready(&b3)],
    ];
    program(&c, &[service("web", VIP, 80, steps[0].clone())]);

    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    thread::scope(|scope| {
        let load = {
            let (running, ok, failed) = (running.clone(), ok.clone(), failed.clone());
            let ns = &client.ns;
            scope.spawn(move || {
                let mut names = std::collections::BTreeMap::<String, u64>::new();
                while running.load(Ordering::Relaxed) {
                    let r = ns.enter(|| -> std::io::Result<String> {
                        let mut s = TcpStream::connect_timeout(
                            &SocketAddr::from((VIP, 80)),
                            Duration::from_secs(3),
                        )?;
                        s.set_read_timeout(Some(Duration::from_secs(3)))?;
                        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                        let mut body = String::new();
                        s.read_to_string(&mut body)?;
                        Ok(body)
                    });
                    match r {
                        Ok(body) if body.starts_with("HTTP/1.1 200") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            let name = body
                                .rsplit("\r\n\r\n")
                                .next()
                                .and_then(|b| b.split_whitespace().next())
                                .unwrap_or("?")
                                .to_owned();
                            *names.entry(name).or_default() += 1;
                        }
                        other => {
                            eprintln!("request failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                names
            })
        };
        for step in &steps[1..] {
            thread::sleep(Duration::from_millis(400));
            program(&c, &[service("web", VIP, 80, step.clone())]);
        }
        thread::sleep(Duration::from_millis(400));
        running.store(false, Ordering::Relaxed);
        seen = load.join().unwrap();
    });
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 100, "only {ok} requests");
    assert_eq!(seen.len(), 3, "every backend served: {seen:?}");
}

/// Path MTU discovery through a ClusterIP: the LAN between the nodes has a smaller MTU than the
/// pods' links; node 1's Packet Too Big quotes the translated segment and must reach the
/// client's socket translated back, or the transfer stalls.
#[test]
fn path_mtu_discovery_through_a_clusterip() {
    let c = cluster::cluster(2);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    for n in &c.nodes {
        n.uplink
            .a
            .ip(&["link", "set", "{}", "mtu", "1300"])
            .unwrap();
    }
    let client = SimPod::attach(&n1.ns, pod_addr(1, 0xc), Some(&n1.layout)).unwrap();
    let b2 = SimPod::attach(&n2.ns, pod_addr(2, 0xb2), Some(&n2.layout)).unwrap();
    let server = EchoServer::start(&b2.ns, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)));
    program(
        &c,
        &[service(
            "echo",
            VIP,
            80,
            vec![backend(b2.addr, 8080, false)],
        )],
    );

    let mut s = client.ns.enter(|| TcpStream::connect((VIP, 80))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // Writer and reader apart, so the echo never waits on a full buffer.
    let big = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut w = s.try_clone().unwrap();
    let data = big.clone();
    let writer = thread::spawn(move || w.write_all(&data));
    let mut got = vec![0u8; big.len()];
    s.read_exact(&mut got)
        .expect("the transfer stalled: PMTU discovery failed");
    writer.join().unwrap().unwrap();
    assert_eq!(got, big);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        count(&n1.layout, Direction::Egress, Reason::SvcIcmpError) > 0,
        "no Packet Too Big was translated"
    );
    drop(s);
    drop(server);
    let _ = EXT;
}

/// A process of the node itself (host network) reaches a ClusterIP: its packets, routed
/// towards the service range, are translated on the uplink's egress and routed again to the
/// backend, local or remote; replies are restored before local delivery.
#[test]
fn host_network_clients_reach_a_clusterip() {
    let c = cluster::cluster(2);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let b1 = SimPod::attach(&n1.ns, pod_addr(1, 0xb1), Some(&n1.layout)).unwrap();
    let b2 = SimPod::attach(&n2.ns, pod_addr(2, 0xb2), Some(&n2.layout)).unwrap();
    let _w1 = Nginx::start(&b1.ns, "b1", 8080);
    let _w2 = Nginx::start(&b2.ns, "b2", 8080);
    program(
        &c,
        &[service(
            "web",
            VIP,
            80,
            vec![backend(b1.addr, 8080, false), backend(b2.addr, 8080, false)],
        )],
    );
    // Nodes route the service range like anything else off-node (a default route does it).
    n1.ns
        .ip(&[
            "-6",
            "route",
            "add",
            "fd00:96::/64",
            "via",
            &EXT.to_string(),
        ])
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..16 {
        let body = curl(&n1.ns, &format!("http://[{VIP}]/"), 5).unwrap();
        let mut it = body.split_whitespace();
        seen.insert(it.next().unwrap().to_owned());
        assert_eq!(it.next().unwrap(), node_addr(1).to_string(), "{body}");
    }
    assert_eq!(seen.len(), 2, "local and remote backends: {seen:?}");
    assert!(count(&n1.layout, Direction::Egress, Reason::SvcNew) >= 16);
}
