//! The `sixlane` plugin chained with the reference plugins: bandwidth and portmap get its result
//! as prevResult and DEL runs in reverse; bandwidth's egress shaping needs the TCX attach mode.

use serde_json::{Value, json};
use sixlane_attach::AttachMode;
use sixlane_testkit::NetNs;
use sixlane_tests::{
    cni::{Call, Plugin, with_prev},
    cni_node::Net,
    load_datapath,
};

/// tc mode puts a clsact qdisc on the host veth, and the reference bandwidth plugin's egress
/// shaping needs the `ingress` qdisc there (to redirect to an ifb): it fails. Ingress shaping (a
/// tbf root qdisc) works in both modes; egress shaping needs `attach: tcx` (docs/cni.md).
#[test]
fn bandwidth_egress_shaping_needs_the_tcx_mode() {
    let (pins, _layout, _dp) = load_datapath();
    let net = Net::new();
    let bandwidth = Plugin::at("/usr/lib/cni/bandwidth");
    for mode in AttachMode::ALL {
        let conf = net.dataplane_conf("1.0.0", pins.path(), mode);
        let pod = NetNs::new().unwrap();
        let netns = pod.path().display().to_string();
        let ours = net.add("bw", &pod, &conf).result().clone();
        let add = Call::new("ADD", "bw", &netns, "eth0");
        let del = Call::new("DEL", "bw", &netns, "eth0");
        let bw_conf = |rates: Value| {
            json!({
                "cniVersion": "1.0.0", "name": net.name, "type": "bandwidth",
                "runtimeConfig": {"bandwidth": rates}, "prevResult": ours,
            })
        };
        let c = bw_conf(json!({"ingressRate": 8_000_000, "ingressBurst": 80_000}));
        bandwidth.call(Some(&net.node), &add, &c).result();
        bandwidth.call(Some(&net.node), &del, &c).ok();
        let c = bw_conf(json!({"egressRate": 8_000_000, "egressBurst": 80_000}));
        let egress = bandwidth.call(Some(&net.node), &add, &c);
        match mode {
            AttachMode::Tc => {
                assert!(!egress.success, "{}", egress.stdout);
                assert!(egress.stdout.contains("ingress qdisc"), "{}", egress.stdout);
            }
            AttachMode::Tcx => {
                egress.result();
            }
        }
        bandwidth.call(Some(&net.node), &del, &c).ok();
        net.call("DEL", "bw", &netns, &conf).ok();
        // The failed egress ADD leaves its ifb behind (bandwidth does not roll back): remove it.
        for l in net.node_links() {
            if l != "lo" {
                let _ = net.node.ip(&["link", "del", &l]);
            }
        }
        assert_eq!(net.node_links(), ["lo"]);
    }
}

#[test]
fn chains_with_the_reference_bandwidth_and_portmap_plugins() {
    let net = Net::new();
    let conf = net.conf("1.0.0");
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    let ours = net.add("chain", &pod, &conf).result().clone();
    let host_if = ours["interfaces"][0]["name"].as_str().unwrap().to_owned();
    let call = Call::new("ADD", "chain", &netns, "eth0");
    let bw_conf = json!({
        "cniVersion": "1.0.0", "name": net.name, "type": "bandwidth",
        "runtimeConfig": {"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000,
                                         "egressRate": 8_000_000, "egressBurst": 80_000}},
        "prevResult": ours,
    });
    let bw = Plugin::at("/usr/lib/cni/bandwidth").call(Some(&net.node), &call, &bw_conf);
    let bw_result = bw.result().clone();
    // prevResult went through unchanged except what bandwidth adds (its ifb interface).
    assert_eq!(bw_result["ips"], ours["ips"]);
    assert_eq!(bw_result["routes"], ours["routes"]);
    assert_eq!(bw_result["interfaces"][0], ours["interfaces"][0]);
    let tc = net
        .node
        .exec("tc", &["qdisc", "show", "dev", &host_if])
        .unwrap();
    assert!(tc.contains("tbf"), "no tbf on {host_if}: {tc}");
    let pm_conf = json!({
        "cniVersion": "1.0.0", "name": net.name, "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": bw_result,
    });
    let pm = Plugin::at("/usr/lib/cni/portmap").call(Some(&net.node), &call, &pm_conf);
    assert_eq!(pm.result()["ips"], ours["ips"]);
    let rules = net.node.exec("ip6tables-save", &[]).unwrap();
    assert!(rules.contains("18080"), "{rules}");
    // DEL in reverse order, each with the final result as prevResult.
    let final_result = pm.result().clone();
    let del = Call::new("DEL", "chain", &netns, "eth0");
    let mut pm_del = pm_conf.clone();
    pm_del["prevResult"] = final_result.clone();
    Plugin::at("/usr/lib/cni/portmap")
        .call(Some(&net.node), &del, &pm_del)
        .ok();
    let mut bw_del = bw_conf.clone();
    bw_del["prevResult"] = final_result.clone();
    Plugin::at("/usr/lib/cni/bandwidth")
        .call(Some(&net.node), &del, &bw_del)
        .ok();
    net.call("DEL", "chain", &netns, &with_prev(&conf, &final_result))
        .ok();
    assert!(net.reservations().is_empty());
    assert!(!net.node_links().iter().any(|l| l == &host_if));
}
