//! The issue's end-to-end BGP scenario, with real daemons only: two nodes each running the real
//! `sixlane-agent` in static mode (`routing.mode: bgp`, the BIRD it supervises, LoadBalancer
//! pools), an upstream router running FRR that peers with both nodes' BIRD, and an outside host
//! behind the router. No static route for a pod or a Service exists anywhere: the router learns
//! them all over BGP, and the assertions read the router's own view (vtysh JSON and its kernel
//! FIB).
//!
//! ```text
//!   outside 2001:db8:ff::2 ── router (FRR, AS 65000) 2001:db8:ff::1 / fd00:f::1 on `lan`
//!                                 ├── node1 fd00:f::2 (AS 64601), pods fd00:10:1::/64
//!                                 └── node2 fd00:f::3 (AS 64602), pods fd00:10:2::/64
//! ```
//!
//! Nodes and the outside host have a default route to the router, as hosts do; nothing else is
//! configured by hand.

use std::{
    fs,
    net::{Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::Ipv6Net;
use nix::sys::signal::Signal;
use sixlane_agent::PinLayout;
use sixlane_testkit::{
    ChildGuard, NetNs, PinDir, TempDir, Veth, fib,
    frr::{Frr, FrrConfig, Neighbor, NeighborState, RemoteAs},
    lan::Lan,
    rtmon::{Change, RouteMonitor},
    wait,
};
use sixlane_tests::{
    agentproc::AgentRun,
    bins,
    cluster::{Nginx, curl},
    echo::{self, EchoServer, Pinger, exchange},
    manifests::put,
    sim::SimPod,
};

const ROUTER_ASN: u32 = 65000;
const OUTSIDE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
const OUTSIDE_GW: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
const SERVICE_RANGE: &str = "fd00:96::/108";
const POOL: &str = "2001:db8:200::/120";
const SETTLE: Duration = Duration::from_secs(30);
const ECHO_PORT: u16 = 9000;
const EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

fn pod_cidr(i: u16) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x10, i, 0, 0, 0, 0, 0), 64).unwrap()
}

/// The pod on node `i`.
fn pod_addr(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, i, 0, 0, 0, 0, 5)
}

fn net(text: &str) -> Ipv6Net {
    text.parse().unwrap()
}

fn node_yaml(i: u16, addr: Ipv6Addr, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node{i}\n  labels: {{{labels}}}\n\
         spec:\n  podCIDRs: [\"{}\"]\nstatus:\n  addresses:\n  - {{type: InternalIP, address: \"{addr}\"}}\n",
        pod_cidr(i)
    )
}

/// A Service `name` (ClusterIP `fd00:96::<n>`, `spec` lines appended) with one ready endpoint:
/// the pod on node `on`.
fn service(name: &str, n: u16, spec: &str, on: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  clusterIPs: [\"fd00:96::{n:x}\"]\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n{spec}\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  \
         labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv6\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
         endpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  nodeName: node{on}\n",
        pod_addr(on)
    )
}

/// Node `i`'s agent configuration: BGP with the router, the other nodes' pod CIDRs learned from
/// it, the ClusterIP range and the pool's addresses announced.
fn agent_yaml(i: u16, router: Ipv6Addr, bird_dir: &Path) -> String {
    format!(
        r#"routing: {{mode: bgp}}
bgp:
  enabled: true
  localASN: {}
  peers:
  - {{name: tor, address: "{router}", asn: {ROUTER_ASN}}}
  import: ["fd00:10::/32"]
  announce:
    clusterIPRanges: ["{SERVICE_RANGE}"]
    loadBalancerIPs: ["2001:db8:200::/64"]
  bird: {{dir: "{}"}}
loadBalancer:
  enabled: true
  pools:
  - {{name: public, cidrs: ["{POOL}"]}}
cni:
  checkBinaries: false
  mtu: 1500
healthz:
  kubeProxyListen: null
"#,
        64600 + i,
        bird_dir.display()
    )
}

/// One node's agent, restartable; its output appended to one log.
struct Agent {
    proc: Option<ChildGuard>,
    pins: PinDir,
    dir: TempDir,
    node: u16,
}

impl Agent {
    fn new(node: u16, router: Ipv6Addr) -> Self {
        let dir = TempDir::new('d').unwrap();
        let bird_dir = dir.path().join("bird");
        fs::write(
            dir.path().join("agent.yaml"),
            agent_yaml(node, router, &bird_dir),
        )
        .unwrap();
        Self {
            proc: None,
            pins: PinDir::new().unwrap(),
            dir,
            node,
        }
    }

    fn start(&mut self, ns: &NetNs, manifests: &Path) {
        let node = format!("node{}", self.node);
        let run = AgentRun::new(self.pins.path(), &node, self.dir.path()).manifests(manifests);
        self.proc = Some(run.spawn(ns));
    }

    /// SIGTERM; the agent must exit cleanly.
    fn stop(&mut self) {
        let mut p = self.proc.take().expect("running");
        p.signal(Signal::SIGTERM).unwrap();
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.success(), "agent {} exit: {status:?}", self.node);
    }

    fn layout(&self) -> PinLayout {
        PinLayout::new(self.pins.path())
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    fn bird_socket(&self) -> PathBuf {
        self.dir.path().join("bird").join("bird.ctl")
    }

    /// `sixlane-agent --json <what>` on this node's state.
    fn json(&self, what: &str) -> serde_json::Value {
        bins::agent_json(
            self.pins.path(),
            &[what, "--state-dir", self.state().to_str().unwrap()],
        )
    }
}

/// The lab. Field order is drop order: pods and agents before the namespaces they live in.
struct Lab {
    /// Each pod's servers, then the pod (they go first).
    pods: Vec<(Nginx, EchoServer, SimPod)>,
    agents: Vec<Agent>,
    frr: Frr,
    mon: RouteMonitor,
    _outside_link: Veth,
    outside: NetNs,
    manifests: TempDir,
    lan: Lan,
}

impl Lab {
    fn new() -> Self {
        sixlane_testkit::require_root();
        let lan = Lan::new(net("fd00:f::/64"), 2).unwrap();
        let outside = NetNs::new().unwrap();
        outside.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        let link = Veth::new_down(Some(&outside), Some(lan.router())).unwrap();
        for (end, a) in [(&link.a, OUTSIDE), (&link.b, OUTSIDE_GW)] {
            end.ip(&["addr", "add", &format!("{a}/64"), "dev", "{}", "nodad"])
                .unwrap();
            end.ip(&["link", "set", "{}", "up"]).unwrap();
        }
        outside
            .ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &OUTSIDE_GW.to_string(),
            ])
            .unwrap();
        let mon = RouteMonitor::start(lan.router()).unwrap();
        let config = (1..=2).fold(
            FrrConfig::new(ROUTER_ASN, "10.255.0.1".parse().unwrap()),
            |c, i| {
                c.neighbor(Neighbor::new(
                    lan.host(i).addr(),
                    RemoteAs::Asn(64600 + u32::from(i)),
                ))
            },
        );
        let frr = Frr::start(lan.router(), config).unwrap();
        let manifests = TempDir::new('m').unwrap();
        let mut agents = Vec::new();
        for i in 1..=2 {
            let ns = lan.host(i).ns();
            ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
            let gw = lan.router_addr().to_string();
            ns.ip(&["-6", "route", "add", "default", "via", &gw])
                .unwrap();
            put(
                manifests.path(),
                &format!("node{i}.yaml"),
                &node_yaml(i, lan.host(i).addr(), ""),
            );
            agents.push(Agent::new(i, lan.router_addr()));
        }
        let mut lab = Self {
            pods: Vec::new(),
            agents,
            frr,
            mon,
            _outside_link: link,
            outside,
            manifests,
            lan,
        };
        for i in 1..=2 {
            lab.start_agent(i);
        }
        for i in 1..=2 {
            lab.wait_ready(i);
            let ns = lab.lan.host(i).ns();
            let layout = lab.agents[usize::from(i - 1)].layout();
            let pod = SimPod::attach(ns, pod_addr(i), Some(&layout)).unwrap();
            let web = Nginx::start(&pod.ns, &format!("p{i}"), 8080);
            let echo = EchoServer::start(
                &pod.ns,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, ECHO_PORT)),
            );
            lab.pods.push((web, echo, pod));
        }
        lab
    }

    fn agent(&mut self, i: u16) -> &mut Agent {
        &mut self.agents[usize::from(i - 1)]
    }

    fn start_agent(&mut self, i: u16) {
        let ns = self.lan.host(i).ns();
        let manifests = self.manifests.path().to_owned();
        self.agents[usize::from(i - 1)].start(ns, &manifests);
    }

    /// Waits for `what`, quoting both agents' logs on a timeout.
    fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let r = wait::until(|| what.to_owned(), SETTLE, || Ok(f().then_some(())));
        if let Err(e) = r {
            let logs: Vec<String> = self
                .agents
                .iter()
                .map(|a| {
                    format!(
                        "node{}:\n{}",
                        a.node,
                        fs::read_to_string(a.log()).unwrap_or_default()
                    )
                })
                .collect();
            panic!("{e}\n{}", logs.join("\n"));
        }
    }

    fn wait_ready(&self, i: u16) {
        let ns = self.lan.host(i).ns();
        self.wait(&format!("node{i} ready"), || {
            curl(ns, "http://[::1]:9660/readyz", 2).is_ok()
        });
    }

    fn put(&self, name: &str, body: &str) {
        put(self.manifests.path(), name, body);
    }

    /// The nodes whose paths to `prefix` the router uses, per vtysh (sorted).
    fn bgp_nodes(&self, prefix: &str) -> Vec<u16> {
        let t = self.frr.bgp_ipv6().unwrap();
        let mut v: Vec<u16> = t
            .used_peers(prefix)
            .iter()
            .filter_map(|p| self.lan.host_of(p.parse().ok()?))
            .collect();
        v.sort();
        v
    }

    /// The nodes the router's kernel FIB forwards `prefix` to, as a route BGP installed
    /// (sorted; empty: no such route).
    fn fib_nodes(&self, prefix: &str) -> Vec<u16> {
        let Some(r) = fib::route(self.lan.router(), net(prefix)).unwrap() else {
            return Vec::new();
        };
        if r.protocol != "bgp" {
            return Vec::new();
        }
        let mut v: Vec<u16> = r
            .gateways()
            .into_iter()
            .filter_map(|g| self.lan.host_of(g))
            .collect();
        v.sort();
        v
    }

    /// Waits until the router, in BGP and in its FIB, sends `prefix` to exactly `nodes`.
    fn wait_route(&self, prefix: &str, nodes: &[u16]) {
        self.wait(
            &format!("the router to route {prefix} to nodes {nodes:?}"),
            || self.bgp_nodes(prefix) == nodes && self.fib_nodes(prefix) == nodes,
        );
    }

    /// HTTP from the outside host.
    fn get(&self, addr: impl std::fmt::Display, port: u16) -> Result<String, String> {
        curl(&self.outside, &format!("http://[{addr}]:{port}/"), 3)
    }

    /// The address both nodes' agents assigned to Service `name` (they must agree).
    fn assigned(&self, name: &str) -> Ipv6Addr {
        let mut got = Vec::new();
        self.wait(&format!("both nodes to assign {name} an address"), || {
            got = self.agents.iter().map(|a| lb_address(a, name)).collect();
            got.iter().all(Option::is_some)
        });
        assert_eq!(got[0], got[1], "the nodes disagree on {name}'s address");
        got[0].unwrap()
    }

    fn neighbor(&self, i: u16) -> NeighborState {
        self.frr.neighbors().unwrap()[&self.lan.host(i).addr().to_string()].clone()
    }
}

/// The address the agent of node `i` assigned to Service `name` (from `sixlane-agent lb`).
fn lb_address(a: &Agent, name: &str) -> Option<Ipv6Addr> {
    let r = a.json("lb");
    r["assigned"]
        .as_array()?
        .iter()
        .find(|s| s["service"] == format!("default/{name}"))?["address"]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn the_router_learns_pods_and_services_from_both_nodes_and_keeps_them_across_restarts() {
    let mut lab = Lab::new();

    // Pod CIDRs: each from its node; the outside host reaches a pod on each by its address,
    // and the pod sees the outside host's address.
    for i in 1..=2 {
        lab.wait_route(&pod_cidr(i).to_string(), &[i]);
        let body = lab.get(pod_addr(i), 8080);
        assert_eq!(body, Ok(format!("p{i} {OUTSIDE}\n")), "pod on node{i}");
    }
    // The nodes learn each other's pod CIDR from the router too, and route none statically
    // (`routing.mode: bgp`).
    for i in 1..=2 {
        let ns = lab.lan.host(i).ns();
        let other = pod_cidr(3 - i).to_string();
        lab.wait(&format!("node{i} to learn {other} over BGP"), || {
            ns.ip(&["-6", "route", "show", "proto", "bird"])
                .is_ok_and(|r| r.contains(&other))
        });
        let routes = ns.ip(&["-6", "route", "show", "proto", "108"]).unwrap();
        assert_eq!(routes.trim(), "", "node{i} has static routes");
    }

    // The ClusterIP range: from both nodes, ECMP; a ClusterIP answers from outside. The
    // router spreads connections over both nodes (IPv6 ECMP hashes the flow label, new per
    // connection); the one without the endpoint source-NATs, so every request is answered.
    lab.put("web.yaml", &service("web", 0x10, "", 1));
    lab.wait_route(SERVICE_RANGE, &[1, 2]);
    lab.wait("the ClusterIP to answer from outside", || {
        lab.get("fd00:96::10", 80)
            .is_ok_and(|b| b.starts_with("p1 "))
    });
    for n in 0..16 {
        let body = lab.get("fd00:96::10", 80);
        assert!(
            body.as_ref().is_ok_and(|b| b.starts_with("p1 ")),
            "request {n} to the ClusterIP from outside: {body:?}"
        );
    }
    let flows = bins::agent_json(lab.agents[1].pins.path(), &["conntrack"]);
    let via_node2 = flows.as_array().map_or(0, |all| {
        all.iter()
            .filter(|f| f["direction"] == "forward" && f["frontend"] == "[fd00:96::10]:80")
            .count()
    });
    assert!(via_node2 > 0, "no request went through node2: {flows}");

    // A LoadBalancer Service gets an address from the pool, announced by both nodes
    // (externalTrafficPolicy: Cluster), and answers from outside.
    lab.put("lb.yaml", &service("lb", 0x11, "  type: LoadBalancer\n", 2));
    let lb = lab.assigned("lb");
    assert!(net(POOL).contains(&lb), "{lb} is not from the pool");
    let lb128 = format!("{lb}/128");
    lab.wait_route(&lb128, &[1, 2]);
    lab.wait("the LoadBalancer address to answer from outside", || {
        lab.get(lb, 80).is_ok_and(|b| b.starts_with("p2 "))
    });

    // externalTrafficPolicy: Local: the /128 only from the node with the endpoint; it moves
    // with the endpoint and goes with the Service.
    let local_spec = "  type: LoadBalancer\n  externalTrafficPolicy: Local\n";
    lab.put("local.yaml", &service("local", 0x12, local_spec, 1));
    let local = lab.assigned("local");
    assert!(net(POOL).contains(&local), "{local} is not from the pool");
    assert_ne!(local, lb, "two Services, two addresses");
    let local128 = format!("{local}/128");
    lab.wait_route(&local128, &[1]);
    lab.wait("the eTP=Local address to answer from node1's pod", || {
        lab.get(local, 80) == Ok(format!("p1 {OUTSIDE}\n"))
    });
    lab.put("local.yaml", &service("local", 0x12, local_spec, 2));
    lab.wait_route(&local128, &[2]);
    lab.wait("the eTP=Local address to answer from node2's pod", || {
        lab.get(local, 80) == Ok(format!("p2 {OUTSIDE}\n"))
    });
    fs::remove_file(lab.manifests.path().join("local.yaml")).unwrap();
    lab.wait_route(&local128, &[]);

    // A node excluded from external load balancers announces no service address, only its
    // pod CIDR.
    lab.put(
        "node2.yaml",
        &node_yaml(2, lab.lan.host(2).addr(), &format!("{EXCLUDE}: \"\"")),
    );
    lab.wait_route(SERVICE_RANGE, &[1]);
    lab.wait_route(&lb128, &[1]);
    lab.wait_route(&pod_cidr(2).to_string(), &[2]);
    lab.put("node2.yaml", &node_yaml(2, lab.lan.host(2).addr(), ""));
    lab.wait_route(SERVICE_RANGE, &[1, 2]);
    lab.wait_route(&lb128, &[1, 2]);

    // Node2's agent restarts while the outside host talks to node2's pod: the session stays,
    // nothing of node2's changes in the router's FIB, the connection survives.
    let ours = [pod_cidr(2), net(SERVICE_RANGE), net(&lb128)];
    let echo_at = SocketAddr::from((pod_addr(2), ECHO_PORT));
    let mut conn = echo::connect(&lab.outside, echo_at).unwrap();
    exchange(&mut conn, b"before");
    let pinger = Pinger::start(echo::connect(&lab.outside, echo_at).unwrap());
    let before = lab.neighbor(2);
    let from = lab.mon.cursor();
    lab.agent(2).stop();
    lab.start_agent(2);
    lab.wait_ready(2);
    lab.wait("node2's agent to adopt BIRD", || {
        lab.agents[1].json("bgp")["bird"]["process"]["adopted"] == true
    });
    // An announcement changed after the restart reaches the router: the agent is working.
    lab.put("local.yaml", &service("local", 0x12, local_spec, 2));
    lab.wait_route(&local128, &[2]);
    let after = lab.neighbor(2);
    assert!(after.established(), "{after:?}");
    assert_eq!(
        (after.connections_established, after.connections_dropped),
        (before.connections_established, before.connections_dropped),
        "the session with node2 was reset"
    );
    let changed: Vec<_> = lab
        .mon
        .events_since(from)
        .into_iter()
        .filter(|e| ours.contains(&e.dst))
        .collect();
    assert!(changed.is_empty(), "node2's routes changed: {changed:?}");
    exchange(&mut conn, b"after the agent restart");

    // BIRD on node2 restarts gracefully (the agent starts it again in recovery mode): the
    // router keeps forwarding to node2's pod meanwhile.
    let from = lab.mon.cursor();
    let socket = lab.agents[1].bird_socket();
    lab.lan
        .host(2)
        .ns()
        .exec(
            "birdc",
            &["-s", socket.to_str().unwrap(), "graceful restart"],
        )
        .unwrap();
    lab.wait("the router's session with node2 to be back", || {
        let n = lab.neighbor(2);
        n.established() && n.connections_established > before.connections_established
    });
    lab.wait_route(&pod_cidr(2).to_string(), &[2]);
    let removed: Vec<_> = lab
        .mon
        .events_since(from)
        .into_iter()
        .filter(|e| e.dst == pod_cidr(2) && e.change == Change::Removed)
        .collect();
    assert!(
        removed.is_empty(),
        "node2's pod CIDR left the FIB: {removed:?}"
    );
    exchange(&mut conn, b"after the BIRD restart");
    assert!(pinger.finish() > 50, "round trips kept completing");
    exchange(&mut conn, b"still there");
}
