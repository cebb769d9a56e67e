//! The real `sixlane-agent` in static-manifest mode inside a node namespace: it loads the
//! datapath, attaches the uplink programs, writes the CNI conflist, keeps routes to the other
//! nodes' pod CIDRs in step with the Node manifests, answers its metrics and health endpoints,
//! and leaves the datapath running when it stops.

use std::{fs, os::unix::fs::PermissionsExt as _, time::Duration};

use nix::sys::signal::Signal;
use sixlane_agent::PinLayout;
use sixlane_common::layout;
use sixlane_testkit::{NetNs, PinDir, TempDir, Veth};
use sixlane_tests::{
    agentproc::{AgentRun, http_get, wait_until},
    bins,
    manifests::put,
};

fn node_yaml(name: &str, ip: &str, cidr: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDRs: [\"{cidr}\"]\n\
         status:\n  addresses:\n  - {{type: InternalIP, address: \"{ip}\"}}\n  - {{type: Hostname, address: {name}}}\n"
    )
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIPs: ["fd00:96::10"]
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["fd00:10:a::5"]
  conditions: {ready: true}
  nodeName: node-a
- addresses: ["fd00:10:b::5"]
  conditions: {ready: true}
  nodeName: node-b
"#;

#[test]
fn static_mode_agent_sets_up_the_node_and_leaves_the_datapath_running() {
    sixlane_testkit::require_root();
    let pins = PinDir::new().unwrap();
    let layout = PinLayout::new(pins.path());
    let dir = TempDir::new('d').unwrap();
    let manifests = dir.path().join("manifests");
    let bin = dir.path().join("bin");
    for d in [&manifests, &bin] {
        fs::create_dir_all(d).unwrap();
    }
    // The init container's job in a cluster: the plugin binaries the agent checks for.
    for b in sixlane_agent::node::cni::BINARIES {
        fs::write(bin.join(b), "#!/bin/sh\nexit 1\n").unwrap();
        fs::set_permissions(bin.join(b), fs::Permissions::from_mode(0o755)).unwrap();
    }

    // Two "nodes" on one link: we are node-a.
    let node_a = NetNs::new().unwrap();
    let node_b = NetNs::new().unwrap();
    let link = Veth::new_down(Some(&node_a), Some(&node_b)).unwrap();
    for (end, ns, ip) in [
        (&link.a, &node_a, "fd00:99::1"),
        (&link.b, &node_b, "fd00:99::2"),
    ] {
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        end.ip(&["addr", "add", &format!("{ip}/64"), "dev", "{}", "nodad"])
            .unwrap();
        end.ip(&["link", "set", "{}", "up"]).unwrap();
    }
    let uplink = link.a.name.clone();

    put(
        &manifests,
        "node-a.yaml",
        &node_yaml("node-a", "fd00:99::1", "fd00:10:a::/64"),
    );
    put(
        &manifests,
        "node-b.yaml",
        &node_yaml("node-b", "fd00:99::2", "fd00:10:b::/64"),
    );
    put(&manifests, "web.yaml", SERVICES);

    let run = AgentRun::new(pins.path(), "node-a", dir.path())
        .manifests(&manifests)
        .cni(&bin, &dir.path().join("ipam"))
        .healthz();
    let (log, state, cfg) = (run.log(), run.state(), run.config());
    let conf = dir.path().join("net.d");
    // A configuration file under the flags: a state map sized by the operator.
    fs::write(&cfg, "datapath:\n  mapSizes: {SL_CT: 4096}\n").unwrap();
    let mut proc = run.spawn(&node_a);

    // The conflist: the plugin's contract, with our pod CIDR, pin root and the uplink's MTU.
    let conflist = conf.join("10-sixlane.conflist");
    wait_until("the conflist", &log, || conflist.exists());
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&conflist).unwrap()).unwrap();
    let plugin = &v["plugins"][0];
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(plugin["type"], "sixlane");
    assert_eq!(plugin["ipam"]["ranges"][0][0]["subnet"], "fd00:10:a::/64");
    assert_eq!(plugin["pinRoot"], pins.path().to_str().unwrap());
    assert_eq!(plugin["mtu"], 1500);

    // Datapath loaded, uplink programs attached through pinned links.
    for (prog, _) in layout::UPLINK_PROGRAMS.iter().chain(&layout::POD_PROGRAMS) {
        assert!(layout.prog(prog).exists(), "{prog} not pinned");
    }
    let ct = aya::maps::MapInfo::from_pin(layout.map(layout::MAP_CT)).unwrap();
    assert_eq!(ct.max_entries(), 4096, "datapath.mapSizes applied");
    wait_until("uplink links", &log, || {
        let links = layout.links().unwrap();
        layout::UPLINK_PROGRAMS
            .iter()
            .all(|(p, _)| links.iter().any(|(i, q, _)| *i == uplink && q == p))
    });

    // Static routing: node-b's pod CIDR via its InternalIP, with our protocol.
    let routes = || node_a.ip(&["-6", "route", "show", "proto", "108"]).unwrap();
    wait_until("the route to node-b", &log, || {
        routes().contains("fd00:10:b::/64 via fd00:99::2")
    });
    // Node-c joins, node-b leaves.
    node_b
        .ip(&["addr", "add", "fd00:99::3/64", "dev", &link.b.name, "nodad"])
        .unwrap();
    put(
        &manifests,
        "node-c.yaml",
        &node_yaml("node-c", "fd00:99::3", "fd00:10:c::/64"),
    );
    wait_until("the route to node-c", &log, || {
        routes().contains("fd00:10:c::/64 via fd00:99::3")
    });
    fs::remove_file(manifests.join("node-b.yaml")).unwrap();
    wait_until("the route to node-b to go", &log, || {
        !routes().contains("fd00:10:b::/64")
    });
    assert!(routes().contains("fd00:10:c::/64"), "{}", routes());

    // Endpoints.
    wait_until("readiness", &log, || {
        http_get(&node_a, "http://[::1]:9660/readyz").0 == 200
    });
    let (code, metrics) = http_get(&node_a, "http://[::1]:9660/metrics");
    assert_eq!(code, 200);
    for want in [
        "sixlane_datapath_packets_total{direction=\"ingress\",reason=\"pass\"",
        "sixlane_map_capacity{map=\"SL_METRICS\"}",
        "sixlane_services 1",
        "sixlane_backends 2",
        "sixlane_routes 1",
        "sixlane_reconcile_duration_seconds_count",
        "sixlane_objects{kind=\"Node\"} 2",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
    assert_eq!(http_get(&node_a, "http://[::1]:9660/healthz").0, 200);
    let (code, body) = http_get(&node_a, "http://[::1]:10256/healthz");
    assert_eq!(code, 200, "{body}");
    let hz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hz["nodeEligible"], true);
    assert!(hz["lastUpdated"].as_str().unwrap().ends_with('Z'));
    // healthCheckNodePort of the Local service: one local endpoint (node-a's pod).
    let (code, body) = http_get(&node_a, "http://[fd00:99::1]:32000/");
    assert_eq!(code, 200, "{body}");
    let hc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hc["localEndpoints"], 1);
    assert_eq!(hc["service"]["name"], "web");

    // `status` explains the node address choice.
    let st = bins::agent_json(
        pins.path(),
        &["status", "--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(st["agentRunning"], true);
    assert_eq!(st["datapathLoaded"], true);
    assert_eq!(st["agent"]["nodeAddress"]["addr"], "fd00:99::1");
    assert!(
        st["agent"]["nodeAddress"]["reason"]
            .as_str()
            .unwrap()
            .contains("kubelet reports it"),
        "{st}"
    );
    assert_eq!(st["agent"]["podCidr"], "fd00:10:a::/64");
    assert_eq!(st["agent"]["ready"], true);

    // A broken manifest keeps the previous state and is counted.
    put(
        &manifests,
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nspec: {ports: 5}\n",
    );
    wait_until("the manifest error", &log, || {
        http_get(&node_a, "http://[::1]:9660/metrics")
            .1
            .contains("sixlane_manifest_errors_total 1")
    });
    assert!(routes().contains("fd00:10:c::/64"));

    // aya-log records from the eBPF side reach the agent's log at debug level: a frame with a
    // truncated IPv6 header arrives on the uplink (the datapath logs malformed packets).
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd]);
    frame.extend([0x60, 0, 0, 0, 0, 8]);
    let peer = link.b.name.clone();
    node_b.enter(|| sixlane_testkit::packet::send_raw(&peer, &frame, 3).unwrap());
    wait_until("the forwarded eBPF log record", &log, || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("malformed packet, 20 bytes")
    });

    // SIGTERM: the agent exits cleanly and leaves the datapath (programs, links) in place.
    proc.signal(Signal::SIGTERM).unwrap();
    let status = proc.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "agent exit: {status:?}");
    for (prog, _) in layout::UPLINK_PROGRAMS {
        assert!(layout.prog(prog).exists());
        assert!(
            layout.link(&uplink, prog).exists(),
            "link pin for {prog} gone"
        );
    }
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("the datapath stays loaded"), "{log_text}");
    assert!(conflist.exists(), "conflist must stay for running pods");
    drop(link);
}
