//! The real `sixlane-agent` answering Neighbor Discovery for its pods on a provider's link: a
//! node namespace and a "provider router" namespace on one /64, the pods inside that /64, and no
//! route for them on the router (only the connected /64). The router reaches a new pod through a
//! multicast solicitation within a second of its creation, keeps reaching it through unicast
//! NUD over several reachable-time cycles, and sees DAD probes for it defended; solicitations
//! for addresses the node does not own go unanswered; a deleted pod's address stops being
//! answered; and answering goes on while the agent is down.

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv6Addr, UdpSocket},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sixlane_agent::{PinLayout, ndp::table::Table};
use sixlane_attach::AttachMode;
use sixlane_common::metrics::{Direction, Reason};
use sixlane_testkit::{
    NetNs, PinDir, TempDir, Veth, names,
    ndp::{Advertisement, Capture, FLAG_OVERRIDE, FLAG_SOLICITED, Solicitation, solicited_node},
};
use sixlane_tests::{
    agentproc::{AgentRun, http_get, wait_until},
    bins,
    cni::{self, Call, Plugin},
    manifests::{self, put},
    neigh::{mac_of, mac_text, neigh},
    sim,
    svc::counters,
};

const NODE_ADDR: &str = "fd00:77:1:2::1";
const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0, 0xff);
const PREFIX: &str = "fd00:77:1:2::/64";
const POD_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0xa, 1);
const POD_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0xa, 2);
const FREE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0xf, 1);
/// A host on the link that is neither the router nor the node (source of crafted probes).
const OTHER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0, 0x99);
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x99];

/// A pod attached by the CNI plugin to the network the agent's conflist names, so its
/// reservation lands where the agent looks; DEL when dropped.
struct Pod<'a> {
    ns: NetNs,
    node: &'a NetNs,
    id: String,
    conf: Value,
}

impl<'a> Pod<'a> {
    fn add(node: &'a NetNs, addr: Ipv6Addr, data: &Path, pins: &PinLayout) -> Self {
        let ns = NetNs::new().unwrap();
        let mut conf = cni::conf("1.0.0", "sixlane", PREFIX, data);
        conf["dataplane"] = json!("required");
        conf["pinRoot"] = json!(pins.root());
        conf["attach"] = json!(AttachMode::Tc.as_str());
        conf["runtimeConfig"] = json!({"ips": [addr.to_string()]});
        conf["ipam"]["ranges"][0][0]["gateway"] = json!("fd00:77:1:2::fffe");
        let id = names::unique('c');
        let netns = ns.path().display().to_string();
        let out = Plugin::sixlane().call(Some(node), &Call::new("ADD", &id, &netns, "eth0"), &conf);
        out.ok();
        Self { ns, node, id, conf }
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let netns = self.ns.path().display().to_string();
        let call = Call::new("DEL", &self.id, &netns, "eth0");
        let out = Plugin::sixlane().call(Some(self.node), &call, &self.conf);
        if !out.success {
            eprintln!("warning: CNI DEL of {}: {}", self.id, out.stderr);
        }
    }
}

fn ping(router: &NetNs, a: Ipv6Addr, count: u32, interval: &str) -> bool {
    router
        .exec_output(
            "ping",
            &[
                "-6",
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                interval,
                "-W",
                "1",
                &a.to_string(),
            ],
        )
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn answered(layout: &PinLayout) -> u64 {
    counters(layout, Direction::Ingress, Reason::NdpAnswered).1
}

/// Sends `ns` from the router's side of the link and returns the advertisements the node sends
/// back within `window` for its target.
fn probe(
    router: &NetNs,
    dev: &str,
    node_mac: [u8; 6],
    ns: &Solicitation,
    window: Duration,
) -> Vec<Advertisement> {
    let target = ns.target;
    router.enter(|| {
        let cap = Capture::open(dev).unwrap();
        sixlane_testkit::packet::send_raw(dev, &ns.frame(), 1).unwrap();
        cap.adverts(window, |a| a.src_mac == node_mac && a.target == target)
    })
}

fn owned(layout: &PinLayout) -> Vec<Ipv6Addr> {
    Table::open(layout)
        .unwrap()
        .entries()
        .unwrap()
        .into_keys()
        .collect()
}

#[test]
fn the_provider_router_reaches_pods_through_neighbor_discovery() {
    sixlane_testkit::require_root();
    let pins = PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    let dir = TempDir::new('d').unwrap();
    let manifests = dir.path().join("manifests");
    let data = dir.path().join("ipam");
    fs::create_dir_all(&manifests).unwrap();

    let node = sim::node().unwrap();
    let router = NetNs::new().unwrap();
    router.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
    let link = Veth::new_down(Some(&node), Some(&router)).unwrap();
    let (up, rdev) = (link.a.name.clone(), link.b.name.clone());
    link.a
        .ip(&[
            "addr",
            "add",
            &format!("{NODE_ADDR}/64"),
            "dev",
            "{}",
            "nodad",
        ])
        .unwrap();
    link.b
        .ip(&["addr", "add", &format!("{ROUTER}/64"), "dev", "{}", "nodad"])
        .unwrap();
    for end in [&link.a, &link.b] {
        end.ip(&["link", "set", "{}", "up"]).unwrap();
    }
    // Short reachable time on the router: NUD cycles (REACHABLE → STALE → DELAY → PROBE with
    // unicast solicitations) every second or so.
    for (k, v) in [
        ("base_reachable_time_ms", "1000"),
        ("delay_first_probe_time", "1"),
    ] {
        router
            .sysctl(&format!("net.ipv6.neigh.{rdev}.{k}"), v)
            .unwrap();
    }
    let node_mac = mac_of(&node, &up);

    put(
        &manifests,
        "node-a.yaml",
        &manifests::node("node-a", NODE_ADDR, "fd00:77:1:2:a::/80"),
    );
    let bin = dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let run = AgentRun::new(pins.path(), "node-a", dir.path())
        .manifests(&manifests)
        .cni(&bin, &data);
    let log = run.log();
    fs::write(
        run.config(),
        format!("node:\n  uplink: {up}\ncni:\n  checkBinaries: false\nndp:\n  enabled: true\n  prefixes: [\"{PREFIX}\"]\n"),
    )
    .unwrap();
    let mut agent = run.spawn(&node);
    wait_until("the uplink programs", &log, || {
        layout
            .links()
            .unwrap()
            .iter()
            .filter(|(i, _, _)| *i == up)
            .count()
            == 2
    });

    // A new pod: in the table (and so answered) within a second, reached through a multicast
    // solicitation (the router has no entry for it yet).
    // Created = the CNI ADD returned (the reservation is written early in it).
    let add = Instant::now();
    let pod_a = Pod::add(&node, POD_A, &data, &layout);
    let created = Instant::now();
    wait_until("pod A in the owned table", &log, || {
        owned(&layout).contains(&POD_A)
    });
    let took = created.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "pod A answered {took:?} after its creation ({:?} after its ADD started)",
        add.elapsed()
    );
    assert_eq!(neigh(&router, &rdev, POD_A), None);
    assert!(ping(&router, POD_A, 1, "0.2"), "router cannot reach pod A");
    let (_, lladdr) = neigh(&router, &rdev, POD_A).expect("router learned pod A");
    assert_eq!(lladdr, mac_text(mac_of(&node, &up)));
    // The node is in pod A's solicited-node group on the uplink (MLD reports sent by the kernel).
    let group = solicited_node(POD_A).to_string();
    wait_until("the solicited-node group joined", &log, || {
        node.ip(&["-6", "maddr", "show", "dev", &up])
            .unwrap()
            .contains(&group)
    });

    // Reported: `sixlane-agent ndp` (the table, with the agent's since/last advertisement),
    // `status`, and the metrics.
    let state = run.state();
    let state = state.to_str().unwrap();
    wait_until(
        "pod A in sixlane-agent ndp with its unsolicited advertisement",
        &log,
        || {
            let v = bins::agent_json(pins.path(), &["ndp", "--state-dir", state]);
            let rows = v["answered"].as_array().unwrap().clone();
            rows.len() == 1
                && rows[0]["address"] == POD_A.to_string()
                && rows[0]["kind"] == "pod"
                && rows[0]["lastUnsolicited"].is_u64()
                && v["agent"]["uplink"] == up.as_str()
        },
    );
    let st = bins::agent_json(pins.path(), &["status", "--state-dir", state]);
    assert_eq!(
        st["agent"]["ndp"]["addresses"][0]["address"],
        POD_A.to_string(),
        "{st}"
    );
    let (_, metrics) = http_get(&node, "http://[::1]:9660/metrics");
    for want in [
        "sixlane_ndp_addresses{kind=\"pod\"} 1",
        "sixlane_ndp_groups 1",
        "sixlane_datapath_packets_total{direction=\"ingress\",reason=\"ndp_answered\"",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }

    // Several reachable-time cycles with UDP traffic (no upper-layer confirmation: ping's
    // replies would confirm reachability and skip NUD): unicast NUD probes answered, every
    // datagram delivered.
    let before = answered(&layout);
    let sink = pod_a.ns.enter(|| UdpSocket::bind("[::]:7777").unwrap());
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let src = router.enter(|| UdpSocket::bind("[::]:0").unwrap());
    let mut states = BTreeSet::new();
    for i in 0..30u32 {
        src.send_to(&i.to_be_bytes(), (POD_A, 7777)).unwrap();
        thread::sleep(Duration::from_millis(200));
        if let Some((s, _)) = neigh(&router, &rdev, POD_A) {
            states.insert(s);
        }
    }
    let mut got = 0;
    let mut buf = [0u8; 16];
    while got < 30 && sink.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(
        got, 30,
        "datagrams lost during NUD; router states {states:?}"
    );
    let nud = answered(&layout) - before;
    assert!(
        nud >= 2,
        "only {nud} solicitations answered over 6 s of NUD cycles ({states:?})"
    );
    assert!(
        states.contains("PROBE") || states.contains("DELAY"),
        "{states:?}"
    );
    assert!(!states.iter().any(|s| s.contains("FAILED")), "{states:?}");

    // A DAD probe for pod A is defended: to all-nodes, Override set, Solicited clear.
    let dad = probe(
        &router,
        &rdev,
        node_mac,
        &Solicitation::dad(OTHER_MAC, POD_A),
        Duration::from_millis(500),
    );
    let a = dad
        .first()
        .unwrap_or_else(|| panic!("DAD probe for pod A not answered"));
    assert_eq!(a.dst, "ff02::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(a.flags, FLAG_OVERRIDE);
    assert_eq!(a.tlla, Some(node_mac));
    // A multicast solicitation from another host: answered to it, Solicited and Override set.
    let ms = probe(
        &router,
        &rdev,
        node_mac,
        &Solicitation::multicast(OTHER_MAC, OTHER, POD_A),
        Duration::from_millis(500),
    );
    let a = ms
        .first()
        .unwrap_or_else(|| panic!("multicast NS for pod A not answered"));
    assert_eq!(
        (a.dst, a.dst_mac, a.flags),
        (OTHER, OTHER_MAC, FLAG_SOLICITED | FLAG_OVERRIDE)
    );
    // Solicitations for what the node does not own: the router's address, a free one.
    for t in [ROUTER, FREE] {
        let got = probe(
            &router,
            &rdev,
            node_mac,
            &Solicitation::multicast(OTHER_MAC, OTHER, t),
            Duration::from_millis(500),
        );
        assert!(got.is_empty(), "the node answered for {t}: {got:?}");
    }

    // A second pod: unsolicited advertisements announce it (several, Override set).
    let cap = router.enter(|| Capture::open(&rdev).unwrap());
    let pod_b = Pod::add(&node, POD_B, &data, &layout);
    let unsolicited = cap.adverts(Duration::from_millis(2500), |a| {
        a.src_mac == node_mac && a.target == POD_B
    });
    assert!(
        unsolicited.len() >= 2,
        "unsolicited advertisements for pod B: {unsolicited:?}"
    );
    for a in &unsolicited {
        assert_eq!(
            (a.dst, a.flags, a.tlla),
            ("ff02::1".parse().unwrap(), FLAG_OVERRIDE, Some(node_mac))
        );
    }

    // Pod A deleted: no longer answered.
    drop(pod_a);
    wait_until("pod A out of the owned table", &log, || {
        !owned(&layout).contains(&POD_A)
    });
    let got = probe(
        &router,
        &rdev,
        node_mac,
        &Solicitation::multicast(OTHER_MAC, OTHER, POD_A),
        Duration::from_millis(500),
    );
    assert!(got.is_empty(), "deleted pod A still answered: {got:?}");

    // The agent stops: pod B stays reachable, resolved afresh through a multicast solicitation.
    agent.signal(Signal::SIGKILL).unwrap();
    let _ = agent.wait_timeout(Duration::from_secs(10));
    router.ip(&["-6", "neigh", "flush", "dev", &rdev]).unwrap();
    assert!(
        ping(&router, POD_B, 10, "0.2"),
        "pod B unreachable while the agent is down"
    );
    assert!(owned(&layout).contains(&POD_B));
    // Back up: the table is kept as it is, pod B still answered.
    let mut agent = run.spawn(&node);
    assert!(
        ping(&router, POD_B, 10, "0.2"),
        "pod B unreachable across the agent's restart"
    );
    wait_until("pod B's group joined again", &log, || {
        node.ip(&["-6", "maddr", "show", "dev", &up])
            .unwrap()
            .contains(&solicited_node(POD_B).to_string())
    });
    drop(pod_b);
    wait_until("pod B out of the owned table", &log, || {
        owned(&layout).is_empty()
    });
    let pod_c = Pod::add(&node, POD_A, &data, &layout);
    wait_until("pod C in the owned table", &log, || {
        owned(&layout) == [POD_A]
    });
    agent.signal(Signal::SIGTERM).unwrap();
    let _ = agent.wait_timeout(Duration::from_secs(10));

    // Started with `ndp` off, the agent empties the table: nothing answered.
    fs::write(
        run.config(),
        format!("node:\n  uplink: {up}\ncni:\n  checkBinaries: false\n"),
    )
    .unwrap();
    let mut agent = run.spawn(&node);
    wait_until("the owned table emptied", &log, || {
        owned(&layout).is_empty()
    });
    let got = probe(
        &router,
        &rdev,
        node_mac,
        &Solicitation::multicast(OTHER_MAC, OTHER, POD_A),
        Duration::from_millis(500),
    );
    assert!(got.is_empty(), "answered with ndp off: {got:?}");
    drop(pod_c);
    agent.signal(Signal::SIGTERM).unwrap();
    let _ = agent.wait_timeout(Duration::from_secs(10));
    drop(link);
}
