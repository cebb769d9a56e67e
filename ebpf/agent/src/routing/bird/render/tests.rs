//! Golden files: `testdata/<case>.conf` is what [`render`] gives for the case of that name
//! (from the agent's YAML through `for_node` and `announcements`, as the agent does it), and
//! BIRD itself accepts each (`bird -p`).
//!
//! After an intended change to the output, regenerate the files and review their diff:
//! `SIXLANE_BLESS=1 cargo test -p sixlane-agent --lib routing::bird::render`.

use std::{
    collections::BTreeMap,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    process::Command,
};

use ipnet::Ipv6Net;

use super::*;
use crate::{
    model::{Backend, DesiredState, Protocol, Service, ServiceId, ServicePort, TrafficPolicy},
    routing::{
        announce::{self, Input},
        bird::password::{self, Password},
        config::BgpConfig,
    },
};

/// Debian's bird2 (`cargo xtask setup` installs it).
const BIRD: &str = "/usr/sbin/bird";

/// One golden case: a node of a configuration, with its services.
struct Case {
    name: &'static str,
    yaml: &'static str,
    node: &'static str,
    labels: &'static [(&'static str, &'static str)],
    services: Vec<Service>,
    kernel: Option<KernelExport>,
    passwords: &'static [(&'static str, &'static str)],
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routing/bird/testdata")
}

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A LoadBalancer Service at `lb` whose one backend is on this node or not.
fn lb_service(name: &str, lb: &str, etp: TrafficPolicy, local: bool) -> Service {
    Service {
        id: ServiceId {
            namespace: "default".into(),
            name: name.into(),
        },
        cluster_ips: vec![ip("fd00:10:96::20")],
        external_ips: Vec::new(),
        load_balancer_ips: vec![ip(lb)],
        ports: vec![ServicePort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: Some(30080),
            backends: vec![Backend {
                addr: ip("fd00:10:244:1::7"),
                port: 8080,
                ready: true,
                serving: true,
                terminating: false,
                local,
            }],
        }],
        external_traffic_policy: etp,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity: None,
        health_check_node_port: None,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "minimal",
            yaml: "
enabled: true
routerID: 10.0.0.1
peers:
  - {name: tor, address: '2001:db8::1', asn: 65000}
announce: {clusterIPRanges: ['fd00:10:96::/108']}
",
            node: "node-a",
            labels: &[],
            services: vec![],
            kernel: None,
            passwords: &[],
        },
        Case {
            name: "two_peers",
            yaml: "
enabled: true
localASN: 64512
nodes: [{name: node-a, localASN: 4200000001}]
gracefulRestartSeconds: 300
peers:
  - {name: tor1, address: '2001:db8:a::1', asn: 65000, port: 1179, bfd: true,
     passwordFile: /etc/sixlane/bgp/tor1, holdTime: 9, keepaliveTime: 3,
     nodeSelector: {rack: r1}}
  - {name: tor2, address: '2001:db8:b::1', asn: 65000, bfd: true, nodes: [node-a, node-b]}
  - {name: other_rack, address: '2001:db8:c::1', asn: 65001, nodeSelector: {rack: r2}}
announce: {clusterIPRanges: ['fd00:10:96::/108']}
",
            node: "node-a",
            labels: &[("rack", "r1")],
            services: vec![],
            kernel: None,
            passwords: &[("tor1", "s3cret tor1 key")],
        },
        Case {
            name: "bgp_routing",
            yaml: "
enabled: true
peers:
  - {name: router, address: 'fd00:1::1', asn: 65000}
  - {name: ibgp_rr, address: 'fd00:1::2', asn: 64512}
import: ['fd00:10:244::/56', 'fd00:20::/48']
announce: {clusterIPRanges: ['fd00:10:96::/108', 'fd00:10:97::/108']}
",
            node: "node-b",
            labels: &[],
            services: vec![],
            kernel: Some(KernelExport { table: 254 }),
            passwords: &[],
        },
        Case {
            name: "etp_local",
            yaml: "
enabled: true
routerID: 192.0.2.7
peers:
  - {name: tor, address: '2001:db8::1', asn: 65000}
announce:
  clusterIPRanges: ['fd00:10:96::/108']
  loadBalancerIPs: ['2001:db8:200::/64']
communities:
  podCIDR: ['65000:100']
  loadBalancerIP: ['65000:200', '65000:1:2']
localPreference:
  loadBalancerIP: 200
",
            node: "node-a",
            labels: &[],
            services: vec![
                lb_service("local-here", "2001:db8:200::10", TrafficPolicy::Local, true),
                lb_service(
                    "local-elsewhere",
                    "2001:db8:200::11",
                    TrafficPolicy::Local,
                    false,
                ),
                lb_service("cluster", "2001:db8:200::12", TrafficPolicy::Cluster, false),
                lb_service(
                    "not-allowed",
                    "2001:db8:300::1",
                    TrafficPolicy::Cluster,
                    true,
                ),
            ],
            kernel: None,
            passwords: &[],
        },
    ]
}

fn rendered(case: &Case) -> String {
    let cfg: BgpConfig = serde_yaml_ng::from_str(case.yaml).unwrap();
    assert!(
        cfg.problems().is_empty(),
        "{}: {:?}",
        case.name,
        cfg.problems()
    );
    let labels: BTreeMap<String, String> = case
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let node = cfg.for_node(case.node, &labels);
    let desired = DesiredState {
        services: case
            .services
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect(),
        ..Default::default()
    };
    let pod_cidrs = [net(match case.node {
        "node-a" => "fd00:10:244:1::/64",
        _ => "fd00:10:244:2::/64",
    })];
    let announcements = announce::announcements(&Input {
        node_excluded: announce::excluded(&labels),
        pod_cidrs: &pod_cidrs,
        cluster_ranges: cfg.cluster_ranges(&[]),
        services: &desired,
        cfg: &cfg,
    });
    let passwords: password::Passwords = case
        .passwords
        .iter()
        .map(|(peer, pw)| (peer.to_string(), Password::for_test(pw)))
        .collect();
    render(&Render {
        node: &node,
        announcements: &announcements,
        import: &cfg.import,
        kernel: case.kernel,
        graceful_restart_secs: cfg.graceful_restart_secs,
        passwords: &passwords,
    })
}

#[test]
fn golden_files() {
    let bless = std::env::var_os("SIXLANE_BLESS").is_some();
    let mut stale = Vec::new();
    for case in cases() {
        let got = rendered(&case);
        assert_eq!(got, rendered(&case), "{}: deterministic", case.name);
        let path = testdata().join(format!("{}.conf", case.name));
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (SIXLANE_BLESS=1 writes it)", path.display()));
        if got != want {
            stale.push(format!("--- {}\n{got}", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "rendered configurations differ from their golden files (if intended: SIXLANE_BLESS=1 \
         cargo test -p sixlane-agent --lib routing::bird::render, then review the diff):\n{}",
        stale.join("\n")
    );
}

/// Every golden file is a configuration BIRD accepts without a warning.
#[test]
fn bird_accepts_the_golden_files() {
    assert!(
        Path::new(BIRD).exists(),
        "{BIRD} is missing: install Debian's bird2 (cargo xtask setup does)"
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(testdata()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        let out = Command::new(BIRD)
            .arg("-p")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        // Warnings (a keepalive above half the hold time) count as failures too.
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "bird -p -c {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, cases().len(), "one golden file per case");
}

#[test]
fn what_each_case_shows() {
    let by_name = |n: &str| rendered(cases().iter().find(|c| c.name == n).unwrap());
    // Peers that do not apply to the node are left out; BFD only when a peer uses it.
    let two = by_name("two_peers");
    assert!(two.contains("protocol bgp peer_tor1") && two.contains("protocol bgp peer_tor2"));
    assert!(!two.contains("other_rack"));
    assert!(two.contains("protocol bfd sixlane_bfd"));
    assert!(!by_name("minimal").contains("bfd"));
    // The per-node ASN.
    assert!(two.contains("local as 4200000001;"));
    // No kernel protocol and no import without routing.mode: bgp.
    let minimal = by_name("minimal");
    assert!(!minimal.contains("protocol kernel") && minimal.contains("import none;"));
    // eBGP peers accept their own ASN once with import on; iBGP ones need not.
    let bgp = by_name("bgp_routing");
    let rr = &bgp[bgp.find("protocol bgp peer_ibgp_rr").unwrap()..];
    let router = &bgp[bgp.find("protocol bgp peer_router").unwrap()..];
    assert!(!rr[..rr.find("\n}").unwrap()].contains("allow local as"));
    assert!(router.contains("allow local as 1;"));
    // eTP Local: only the address with a local endpoint; the allow-list holds.
    let etp = by_name("etp_local");
    assert!(etp.contains("2001:db8:200::10/128") && etp.contains("2001:db8:200::12/128"));
    assert!(!etp.contains("2001:db8:200::11") && !etp.contains("2001:db8:300::1"));
}
