//! The real `sixlane-agent` in static-manifest mode with BGP on (`routing.mode: bgp`), peering
//! through the BIRD it runs with a router's BIRD in another namespace: the router learns the
//! node's pod CIDR, the ClusterIP range and an `externalTrafficPolicy: Local` LoadBalancer IP
//! (withdrawn when the node's endpoint goes); the node learns another node's pod CIDR into its
//! kernel (no static route); a peer that is down shows why and never costs readiness; an agent
//! restart leaves BIRD and the session alone.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Stdio, time::Duration};

use ipnet::Ipv6Net;
use nix::sys::signal::Signal;
use sixlane_agent::routing::bird::{
    Paths,
    control::{Control, Routes},
};
use sixlane_testkit::{ChildGuard, NetNs, PinDir, TempDir, Veth};
use sixlane_tests::{
    agentproc::{AgentRun, http_get, wait_until},
    bins,
    manifests::{self, put},
};

const BIRD: &str = "/usr/sbin/bird";
const NODE: &str = "fd00:99::1";
const ROUTER: &str = "fd00:99::2";
/// The router's second address, where no BGP speaker listens on the peer's port.
const NOBODY: &str = "fd00:99::3";
const POD_CIDR: &str = "fd00:10:a::/64";
/// Another node's pod CIDR, which the router passes on.
const OTHER_POD_CIDR: &str = "fd00:10:b::/64";
const SERVICE_RANGE: &str = "fd00:96::/108";
const LB_IP: &str = "2001:db8:200::10/128";

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIPs: ["fd00:96::10"]
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
status:
  loadBalancer:
    ingress: [{ip: "2001:db8:200::10"}]
"#;

/// The Service's endpoints: one on `node`.
fn slice(node: &str) -> String {
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: ["fd00:10:b::5"]
  conditions: {{ready: true}}
  nodeName: {node}
"#
    )
}

/// The agent's configuration: one router, and a peer nothing listens for.
fn agent_yaml(bird_dir: &Path) -> String {
    format!(
        r#"routing: {{mode: bgp}}
bgp:
  enabled: true
  localASN: 64512
  peers:
  - {{name: tor, address: "{ROUTER}", asn: 65001}}
  - {{name: gone, address: "{NOBODY}", port: 1791, asn: 65001}}
  import: ["fd00:10::/32"]
  announce:
    clusterIPRanges: ["{SERVICE_RANGE}"]
    loadBalancerIPs: ["2001:db8:200::/64"]
  bird: {{dir: "{}"}}
"#,
        bird_dir.display()
    )
}

/// The router: passes another node's pod CIDR on, takes everything the node announces.
fn router_conf() -> String {
    format!(
        r#"log stderr all;
router id 10.0.0.2;
timeformat protocol iso long;
protocol device {{}}
protocol static fabric {{
  ipv6;
  route {OTHER_POD_CIDR} blackhole;
}}
protocol bgp node_a {{
  local {ROUTER} as 65001;
  neighbor {NODE} as 64512;
  connect delay time 1;
  graceful restart on;
  ipv6 {{ import all; export where proto = "fabric"; }};
}}
"#
    )
}

/// The router's BIRD, asked through its control socket.
struct Router {
    ctl: Control,
    rt: tokio::runtime::Runtime,
}

impl Router {
    /// The prefixes it has from the node.
    fn learned(&self) -> Vec<String> {
        self.rt
            .block_on(self.ctl.routes(&Routes::From("node_a".into())))
            .map(|r| r.iter().map(Ipv6Net::to_string).collect())
            .unwrap_or_default()
    }

    /// When the session with the node last changed state.
    fn since(&self) -> String {
        let protocols = self.rt.block_on(self.ctl.protocols()).unwrap();
        let p = protocols.iter().find(|p| p.name == "node_a").unwrap();
        assert_eq!(p.bgp.as_ref().unwrap().state, "Established");
        p.since.clone()
    }
}

fn bgp_json(pins: &Path, state: &Path) -> serde_json::Value {
    bins::agent_json(pins, &["bgp", "--state-dir", state.to_str().unwrap()])
}

fn birds(ns: &NetNs) -> Vec<i32> {
    ns.pids()
        .into_iter()
        .filter(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "bird"))
        .collect()
}

#[test]
fn the_agent_announces_through_bird_and_learns_routes_from_it() {
    sixlane_testkit::require_root();
    assert!(
        Path::new(BIRD).exists(),
        "{BIRD} is missing: install bird2 (cargo xtask setup does)"
    );
    let pins = PinDir::new().unwrap();
    let dir = TempDir::new('d').unwrap();
    let d = dir.path();
    let (manifests, bin, rdir) = (d.join("manifests"), d.join("bin"), d.join("router"));
    for x in [&manifests, &bin, &rdir] {
        fs::create_dir_all(x).unwrap();
    }
    for b in sixlane_agent::node::cni::BINARIES {
        fs::write(bin.join(b), "#!/bin/sh\nexit 1\n").unwrap();
        fs::set_permissions(bin.join(b), fs::Permissions::from_mode(0o755)).unwrap();
    }

    let node = NetNs::new().unwrap();
    let router = NetNs::new().unwrap();
    let link = Veth::new_down(Some(&node), Some(&router)).unwrap();
    for (end, ns, ip) in [(&link.a, &node, NODE), (&link.b, &router, ROUTER)] {
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        end.ip(&["addr", "add", &format!("{ip}/64"), "dev", "{}", "nodad"])
            .unwrap();
        end.ip(&["link", "set", "{}", "up"]).unwrap();
    }
    link.b
        .ip(&["addr", "add", &format!("{NOBODY}/64"), "dev", "{}", "nodad"])
        .unwrap();
    let rp = Paths::new(&rdir);
    fs::write(&rp.config, router_conf()).unwrap();
    let mut rcmd = router.command(BIRD);
    rcmd.args(["-f", "-c"])
        .arg(&rp.config)
        .arg("-s")
        .arg(&rp.socket)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&rp.log).unwrap());
    let _router_bird = ChildGuard::spawn(&mut rcmd).unwrap();
    let r = Router {
        ctl: Control::new(&rp.socket),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };

    put(
        &manifests,
        "node-a.yaml",
        &manifests::node("node-a", NODE, POD_CIDR),
    );
    put(&manifests, "web.yaml", SERVICE);
    put(&manifests, "web-slice.yaml", &slice("node-a"));
    let bird_dir = d.join("bird");
    let run = AgentRun::new(pins.path(), "node-a", d)
        .manifests(&manifests)
        .cni(&bin, &d.join("ipam"))
        .healthz();
    fs::write(run.config(), agent_yaml(&bird_dir)).unwrap();
    let (state, log) = (run.state(), run.log());
    let mut proc = run.spawn(&node);

    // The router learns what the node announces; the node learns the other pod CIDR into its
    // kernel from BIRD, and the agent installs no static route.
    // Sorted by prefix.
    let want = [LB_IP, POD_CIDR, SERVICE_RANGE];
    wait_until("the router to learn the node's prefixes", &log, || {
        r.learned() == want
    });
    let kernel = || node.ip(&["-6", "route", "show", "proto", "bird"]).unwrap();
    wait_until("the learned route in the node's kernel", &log, || {
        kernel().contains(&format!("{OTHER_POD_CIDR} via {ROUTER}"))
    });
    assert_eq!(
        node.ip(&["-6", "route", "show", "proto", "108"])
            .unwrap()
            .trim(),
        "",
        "routing.mode: bgp installs no static route"
    );

    // A peer that is down costs no readiness, and says why.
    wait_until("readiness", &log, || {
        http_get(&node, "http://[::1]:9660/readyz").0 == 200
    });
    wait_until("the agent's BGP status", &log, || {
        let v = bgp_json(pins.path(), &state);
        v["bird"]["process"]["running"] == true
            && v["peers"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["name"] == "gone" && p["downReason"] == "refused")
            })
    });
    let v = bgp_json(pins.path(), &state);
    assert_eq!(v["peersFrom"], "bird", "{v:#}");
    let tor = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tor")
        .unwrap();
    assert_eq!(tor["up"], true, "{v:#}");
    assert_eq!(
        tor["received"],
        serde_json::json!([OTHER_POD_CIDR]),
        "{v:#}"
    );
    let bird_pid = v["bird"]["process"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {v:#}"));
    assert_eq!(v["bird"]["process"]["adopted"], false, "{v:#}");
    let kinds: Vec<&str> = v["announced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["loadBalancerIP", "podCIDR", "clusterIPRange"],
        "{v:#}"
    );
    wait_until("the BGP metrics", &log, || {
        let m = http_get(&node, "http://[::1]:9660/metrics").1;
        [
            "sixlane_bgp_session_up{peer=\"tor\"} 1",
            "sixlane_bgp_session_up{peer=\"gone\"} 0",
            "sixlane_bgp_session_down_reason{peer=\"gone\",reason=\"refused\"} 1",
            "sixlane_bgp_announced_prefixes{kind=\"loadBalancerIP\"} 1",
            "sixlane_bgp_received_prefixes{peer=\"tor\"} 1",
            "sixlane_bird_up 1",
            "sixlane_bird_restarts_total 0",
        ]
        .iter()
        .all(|w| m.contains(w))
    });

    // The endpoint moves to another node: the eTP=Local address is withdrawn, the rest stays,
    // without a session reset.
    let since = r.since();
    put(&manifests, "web-slice.yaml", &slice("node-b"));
    wait_until("the LoadBalancer IP withdrawn", &log, || {
        r.learned() == [POD_CIDR, SERVICE_RANGE]
    });
    assert_eq!(r.since(), since, "the session was reset");

    // An agent restart: BIRD and the session stay, the next agent adopts BIRD.
    proc.signal(Signal::SIGTERM).unwrap();
    let status = proc.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "agent exit: {status:?}");
    assert_eq!(birds(&node), [bird_pid as i32], "BIRD outlives the agent");
    let _proc = run.spawn(&node);
    wait_until("the agent adopting BIRD", &log, || {
        let v = bgp_json(pins.path(), &state);
        v["bird"]["process"]["adopted"] == true
            && v["bird"]["process"]["pid"] == bird_pid
            && v["config"]["configuredAt"].is_u64()
    });
    put(&manifests, "web-slice.yaml", &slice("node-a"));
    wait_until("the LoadBalancer IP back", &log, || r.learned() == want);
    assert_eq!(r.since(), since, "the session was reset");
    assert_eq!(birds(&node), [bird_pid as i32], "no second BIRD");
    drop(link);
}
