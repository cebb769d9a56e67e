//! LoadBalancer IPs in L2 mode on a provider's link: two nodes running the real agent, each with
//! a ready endpoint of one `externalTrafficPolicy: Local` LoadBalancer Service whose address
//! sits in the link's /64, and a provider router (`ext`) with only the connected /64, in front
//! of an outside host. Exactly one node answers Neighbor Discovery for the address, both agree
//! which; when the owner's agent dies, the other node takes the address over, the router
//! learns it from the unsolicited advertisement (before asking again) and the outside host's
//! requests are answered again, now by the other node's pod; the restarted agent takes it back;
//! when the owner's node drops off the link, the same. How long each move took is printed (the
//! promised bound, 3 s, is asserted).

use std::{
    net::Ipv6Addr,
    path::Path,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::Value;
use sixlane_agent::{
    PinLayout,
    ndp::{lease::Lease, table::Table},
};
use sixlane_common::ndp::kind;
use sixlane_testkit::{
    ChildGuard, NetNs, Veth,
    ndp::{Capture, FLAG_OVERRIDE},
};
use sixlane_tests::{
    agentproc::{AgentRun, http_get, wait_for, wait_until},
    bins,
    cluster::{self, EXT, Nginx, SimCluster, TempDir, curl, pod_addr},
    manifests::{self, put},
    neigh::{mac_of, mac_text, neigh},
    sim::SimPod,
};

const PREFIX: &str = "fd00:1::/64";
const POOL: &str = "fd00:1::1b:0/120";
/// The pool's first address: the Service's.
const LB: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0x1b, 1);
const OUTSIDE_NET: &str = "fd00:78::/64";
const OUTSIDE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 2);
/// The failover bound the feature promises.
const BOUND: Duration = Duration::from_secs(3);

fn manifests(dir: &Path) {
    for i in 1..=2u16 {
        put(
            dir,
            &format!("node{i}.yaml"),
            &manifests::node(
                &format!("node{i}"),
                cluster::node_addr(i),
                &format!("fd00:{:x}::/64", i * 0x10),
            ),
        );
    }
    put(
        dir,
        "web.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n\
             spec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  clusterIPs: [\"fd00:96::20\"]\n  \
             ports: [{{name: http, port: 80, targetPort: 8080}}]\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  \
             labels: {{kubernetes.io/service-name: web}}\naddressType: IPv6\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
             endpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  nodeName: node1\n\
             - addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  nodeName: node2\n",
            pod_addr(1, 0xa),
            pod_addr(2, 0xa)
        ),
    );
}

/// One node's agent: its run, and the process while it runs.
struct Agent {
    run: AgentRun,
    layout: PinLayout,
    child: Option<ChildGuard>,
}

impl Agent {
    fn start(&mut self, ns: &NetNs) {
        self.child = Some(self.run.spawn(ns));
    }

    fn kill(&mut self, sig: Signal) {
        let mut c = self.child.take().expect("the agent runs");
        c.signal(sig).unwrap();
        let _ = c.wait_timeout(Duration::from_secs(10));
    }

    /// Whether the node's table holds the LoadBalancer IP under the running lease, i.e.
    /// whether the datapath answers for it.
    fn answers(&self) -> bool {
        let held = Table::open(&self.layout)
            .and_then(|t| t.entries())
            .is_ok_and(|e| e.get(&LB).is_some_and(|o| o.kind == kind::LB));
        held && Lease::open(&self.layout).is_ok_and(|l| l.running().unwrap_or(false))
    }

    /// `sixlane-agent ndp --json`.
    fn ndp(&self) -> Value {
        let state = self.run.state();
        bins::agent_json(
            self.layout.root(),
            &["ndp", "--state-dir", state.to_str().unwrap()],
        )
    }
}

/// The index (0 or 1) of the node answering for the address, once exactly one does.
fn owner(agents: &[Agent; 2]) -> Option<usize> {
    match (agents[0].answers(), agents[1].answers()) {
        (true, false) => Some(0),
        (false, true) => Some(1),
        _ => None,
    }
}

/// The outside host: behind `ext`, which routes between it and the link.
fn outside_host(c: &SimCluster) -> (NetNs, Veth) {
    let host = NetNs::new().unwrap();
    host.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
    c.ext.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    let v = Veth::new_down(Some(&host), Some(&c.ext)).unwrap();
    v.a.ip(&[
        "addr",
        "add",
        &format!("{OUTSIDE}/64"),
        "dev",
        "{}",
        "nodad",
    ])
    .unwrap();
    v.b.ip(&["addr", "add", "fd00:78::1/64", "dev", "{}", "nodad"])
        .unwrap();
    for end in [&v.a, &v.b] {
        end.ip(&["link", "set", "{}", "up"]).unwrap();
    }
    host.ip(&["-6", "route", "add", "default", "via", "fd00:78::1"])
        .unwrap();
    for n in &c.nodes {
        n.ns.ip(&["-6", "route", "add", OUTSIDE_NET, "via", &EXT.to_string()])
            .unwrap();
    }
    (host, v)
}

/// Requests from the outside host until node `to`'s pod answers.
fn answered_by(host: &NetNs, to: usize, log: &Path) {
    let url = format!("http://[{LB}]/");
    let want = format!("pod{} {OUTSIDE}", to + 1);
    wait_until(
        &format!("pod{} to answer the outside host", to + 1),
        log,
        || curl(host, &url, 1).is_ok_and(|b| b.trim() == want),
    );
}

/// Waits until node `to` alone answers for the address; how long after `since` that was.
fn taken_over(agents: &[Agent; 2], to: usize, since: Instant, log: &Path) -> Duration {
    let start = Instant::now();
    while owner(agents) != Some(to) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node{} never took the address over; log:\n{}",
            to + 1,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    since.elapsed()
}

#[test]
fn one_node_answers_for_an_l2_load_balancer_ip_and_another_takes_it_over() {
    let c = cluster::cluster(2);
    let dir = TempDir::new();
    let mdir = dir.path().join("manifests");
    std::fs::create_dir_all(&mdir).unwrap();
    manifests(&mdir);
    let rdev = c.ext_veth.a.name.clone();
    let (host, _host_link) = outside_host(&c);

    let mut pods = Vec::new();
    let mut agents = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let pod = SimPod::attach(&n.ns, pod_addr(n.index, 0xa), Some(&n.layout)).unwrap();
        let web = Nginx::start(&pod.ns, &format!("pod{}", i + 1), 8080);
        pods.push((pod, web));
        let adir = dir.path().join(format!("node{}", n.index));
        std::fs::create_dir_all(&adir).unwrap();
        let run =
            AgentRun::new(n.layout.root(), &format!("node{}", n.index), &adir).manifests(&mdir);
        std::fs::write(
            run.config(),
            format!(
                "node:\n  uplink: {}\nloadBalancer:\n  enabled: true\n  pools:\n  - {{name: link, cidrs: [\"{POOL}\"]}}\n\
                 ndp:\n  enabled: true\n  prefixes: [\"{PREFIX}\"]\n\
                 cni:\n  checkBinaries: false\n  mtu: 1500\nhealthz:\n  kubeProxyListen: null\n",
                n.uplink_if()
            ),
        )
        .unwrap();
        agents.push(Agent {
            run,
            layout: n.layout.clone(),
            child: None,
        });
    }
    let mut agents: [Agent; 2] = agents.try_into().map_err(|_| ()).unwrap();
    for (a, n) in agents.iter_mut().zip(&c.nodes) {
        a.start(&n.ns);
    }
    let log = agents[0].run.log();
    let macs: Vec<[u8; 6]> = c
        .nodes
        .iter()
        .map(|n| mac_of(&n.ns, n.uplink_if()))
        .collect();

    // One owner, and both agents name the same one with both as candidates.
    let first = wait_for("one node to answer for the address", &log, || {
        owner(&agents)
    });
    let other = 1 - first;
    let owner_name = format!("node{}", first + 1);
    wait_until("both agents to agree on the owner", &log, || {
        agents.iter().all(|a| {
            let v = a.ndp();
            let row = &v["agent"]["loadBalancerIps"][0];
            row["address"] == LB.to_string()
                && row["owner"] == owner_name.as_str()
                && row["candidates"].as_array().is_some_and(|c| c.len() == 2)
                && v["agent"]["peers"].as_array().is_some_and(|p| p.len() == 1)
        })
    });
    for (i, n) in c.nodes.iter().enumerate() {
        let (_, m) = http_get(&n.ns, "http://[::1]:9660/metrics");
        let (lb, owner) = if i == first {
            (1, "here")
        } else {
            (0, "elsewhere")
        };
        for want in [
            format!("sixlane_ndp_addresses{{kind=\"lb\"}} {lb}"),
            format!("sixlane_ndp_load_balancer_ips{{owner=\"{owner}\"}} 1"),
            "sixlane_ndp_peers 1".to_owned(),
        ] {
            assert!(m.contains(&want), "node{}: missing {want} in\n{m}", i + 1);
        }
    }
    answered_by(&host, first, &log);
    let (_, lladdr) = neigh(&c.ext, &rdev, LB).expect("the router resolved the address");
    assert_eq!(lladdr, mac_text(macs[first]));
    assert!(!agents[other].answers());

    // The owner's agent dies: the other node takes over and says so on the link. Nothing is
    // sent to the address meanwhile, so the router has no reason to solicit it: its entry can
    // only move to the new owner through the unsolicited advertisement.
    let cap = c.ext.enter(|| Capture::open(&rdev).unwrap());
    let t0 = Instant::now();
    agents[first].kill(Signal::SIGKILL);
    let took = taken_over(&agents, other, t0, &log);
    wait_until(
        "the router to learn the new owner from its advertisement",
        &log,
        || neigh(&c.ext, &rdev, LB).is_some_and(|(_, mac)| mac == mac_text(macs[other])),
    );
    let nas = cap.adverts(Duration::from_millis(100), |a| a.target == LB);
    assert!(
        nas.iter().any(|a| a.src_mac == macs[other]
            && a.flags == FLAG_OVERRIDE
            && a.tlla == Some(macs[other])),
        "no unsolicited advertisement from the new owner: {nas:?}"
    );
    answered_by(&host, other, &log);
    assert!(
        !agents[first].answers(),
        "the dead agent's node still answers"
    );
    println!("agent killed: the other node answering after {took:?}");
    assert!(took <= BOUND, "failover took {took:?}");
    let group = sixlane_testkit::ndp::solicited_node(LB).to_string();
    let up = c.nodes[other].uplink_if();
    assert!(
        c.nodes[other]
            .ns
            .ip(&["-6", "maddr", "show", "dev", up])
            .unwrap()
            .contains(&group),
        "the new owner did not join the address's solicited-node group"
    );

    // The agent comes back: the address returns to its first owner (every node ranks alike).
    let t0 = Instant::now();
    agents[first].start(&c.nodes[first].ns);
    let took = taken_over(&agents, first, t0, &log);
    answered_by(&host, first, &log);
    println!("agent restarted: the address back on its first owner after {took:?}");

    // The owner's node drops off the link (its switch port goes down): taken over again.
    let t0 = Instant::now();
    c.nodes[first]
        .uplink
        .b
        .ip(&["link", "set", "{}", "down"])
        .unwrap();
    // The first node's agent still runs (and answers, alone on its side of the down port).
    let took = wait_for("the other node to take the address over", &log, || {
        agents[other].answers().then(|| t0.elapsed())
    });
    answered_by(&host, other, &log);
    println!("node off the link: the other node answering after {took:?}");
    assert!(took <= BOUND, "failover took {took:?}");

    // Stopped gracefully, the last owner leaves at once and ends its lease.
    agents[other].kill(Signal::SIGTERM);
    assert!(!agents[other].answers());
    agents[first].kill(Signal::SIGTERM);
    drop(pods);
}
