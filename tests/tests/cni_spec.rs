//! The `sixlane` CNI plugin's spec commands against real network namespaces: ADD, CHECK and DEL
//! for every spec version with the result verified in the kernel (through iproute2's netlink
//! JSON, independent of the plugin's own netlink code), VERSION, DEL whatever is already gone,
//! CHECK against a changed pod, and the range-gateway mode.

use std::fs;

use serde_json::{Value, json};
use sixlane_testkit::NetNs;
use sixlane_tests::{
    cni::{self, Call, Plugin, with_prev},
    cni_node::{Net, SUBNET, ip_json},
};

fn sysctl(ns: &NetNs, key: &str) -> String {
    ns.exec("cat", &[&format!("/proc/sys/net/{key}")])
        .unwrap()
        .trim()
        .to_owned()
}

fn route<'a>(routes: &'a Value, dst: &str) -> Option<&'a Value> {
    routes.as_array().unwrap().iter().find(|r| r["dst"] == dst)
}

/// Everything ADD promised, read back from the kernel.
fn verify_plumbing(net: &Net, pod: &NetNs, result: &Value) {
    let ip = result["ips"][0]["address"].as_str().unwrap();
    let (addr, prefix) = ip.split_once('/').unwrap();
    let host_if = result["interfaces"][0]["name"].as_str().unwrap();
    assert!(
        host_if.len() <= 15 && host_if.starts_with("sl"),
        "{host_if}"
    );
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().display().to_string()
    );
    assert_eq!(result["ips"][0]["interface"], 1);
    assert_eq!(result["ips"][0]["gateway"], "fe80::1");

    // Pod side: exactly our address, usable at once (no DAD), no prefix route.
    let link = &ip_json(pod, &["-6", "addr", "show", "dev", "eth0"])[0];
    assert_eq!(link["mtu"], 1500);
    let globals: Vec<&Value> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .collect();
    assert_eq!(globals.len(), 1, "{link}");
    assert_eq!(globals[0]["local"], addr);
    assert_eq!(globals[0]["prefixlen"].to_string(), prefix);
    assert_eq!(globals[0]["nodad"], true);
    assert_eq!(globals[0]["noprefixroute"], true);
    assert!(globals[0].get("tentative").is_none(), "{link}");
    let routes = ip_json(pod, &["-6", "route", "show"]);
    let default = route(&routes, "default").expect("default route");
    assert_eq!(default["gateway"], "fe80::1");
    assert_eq!(default["dev"], "eth0");
    let nat64 = route(&routes, "64:ff9b::/96").expect("64:ff9b::/96 route");
    assert_eq!(nat64["gateway"], "fe80::1");
    assert_eq!(nat64["metrics"][0]["mtu"], 1480);
    assert_eq!(nat64["metrics"][0]["advmss"], 1420);
    assert_eq!(route(&routes, SUBNET).unwrap()["gateway"], "fe80::1");
    assert_eq!(sysctl(pod, "ipv6/conf/lo/disable_ipv6"), "0");
    assert_eq!(sysctl(pod, "ipv6/conf/eth0/disable_ipv6"), "0");
    assert_eq!(sysctl(pod, "ipv6/conf/eth0/keep_addr_on_down"), "1");
    assert_eq!(sysctl(pod, "ipv6/conf/eth0/accept_dad"), "0");

    // Host side: the veth with the link-local gateway, a /128 to the pod, no RAs, forwarding.
    let node = &net.node;
    let hl = &ip_json(node, &["-6", "addr", "show", "dev", host_if])[0];
    assert!(
        hl["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "fe80::1" && a["prefixlen"] == 64),
        "{hl}"
    );
    assert_eq!(hl["mtu"], 1500);
    let host_routes = ip_json(node, &["-6", "route", "show"]);
    assert_eq!(
        route(&host_routes, addr).expect("host /128")["dev"],
        host_if
    );
    assert_eq!(sysctl(node, &format!("ipv6/conf/{host_if}/accept_ra")), "0");
    assert_eq!(sysctl(node, "ipv6/conf/all/forwarding"), "1");

    // And it carries traffic right away: pod → gateway, node → pod.
    pod.exec("ping", &["-6", "-c", "1", "-W", "2", "fe80::1%eth0"])
        .unwrap();
    node.exec("ping", &["-6", "-c", "1", "-W", "2", addr])
        .unwrap();
}

#[test]
fn add_check_del_for_every_spec_version() {
    let net = Net::new();
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let pod = NetNs::new().unwrap();
        let id = format!("ctr-{i}");
        let conf = net.conf(version);
        let out = net.add(&id, &pod, &conf);
        let result = out.result().clone();
        assert_eq!(result["cniVersion"], version);
        // 0.4.0 tags IPs with their family; 1.1 fields only in 1.1.
        assert_eq!(
            result["ips"][0].get("version").is_some(),
            version == "0.4.0"
        );
        assert_eq!(
            result["routes"][1].get("mtu").is_some(),
            version == "1.1.0",
            "{result}"
        );
        assert_eq!(
            result["interfaces"][0].get("mtu").is_some(),
            version == "1.1.0"
        );
        verify_plumbing(&net, &pod, &result);
        assert_eq!(net.reservations().len(), 1, "version {version}");

        let netns = pod.path().display().to_string();
        net.call("CHECK", &id, &netns, &with_prev(&conf, &result))
            .ok();
        let host_if = result["interfaces"][0]["name"].as_str().unwrap();
        net.call("DEL", &id, &netns, &with_prev(&conf, &result))
            .ok();
        assert!(!net.node_links().iter().any(|l| l == host_if));
        assert!(!cni::links(&pod).iter().any(|l| l == "eth0"));
        assert!(net.reservations().is_empty());
        // DEL again, then with an empty CNI_NETNS as containerd sends it: still success.
        net.call("DEL", &id, &netns, &conf).ok();
        net.call("DEL", &id, "", &conf).ok();
        // CHECK after DEL fails.
        let after = net.call("CHECK", &id, &netns, &with_prev(&conf, &result));
        assert!(!after.success);
        if version != "1.1.0" {
            assert_eq!(net.call("GC", "", "", &conf).code(), 1);
            assert_eq!(net.call("STATUS", "", "", &conf).code(), 1);
        } else {
            net.call("STATUS", "", "", &conf).ok();
        }
    }
}

#[test]
fn version_lists_what_we_speak() {
    let p = Plugin::sixlane();
    let out = p.call_raw(
        None,
        &Call::new("VERSION", "", "", ""),
        b"{\"cniVersion\":\"1.0.0\"}",
    );
    let doc = out.result();
    assert_eq!(doc["cniVersion"], "1.0.0");
    assert_eq!(doc["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    // cniVersions: the highest supported entry wins.
    let net = Net::new();
    let mut conf = net.conf("1.0.0");
    conf.as_object_mut().unwrap().remove("cniVersion");
    conf["cniVersions"] = json!(["0.3.1", "1.0.0", "1.1.0", "9.0.0"]);
    let pod = NetNs::new().unwrap();
    let r = net.add("cv", &pod, &conf);
    assert_eq!(r.result()["cniVersion"], "1.1.0");
    net.call("DEL", "cv", "", &conf).ok();
}

#[test]
fn del_succeeds_whatever_is_already_gone() {
    let net = Net::new();
    let conf = net.conf("1.0.0");
    // Nothing ever added.
    net.call("DEL", "never", "/run/netns/does-not-exist", &conf)
        .ok();
    // The namespace vanished before DEL (its veth went with it).
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    net.add("gone-ns", &pod, &conf).result();
    drop(pod);
    net.call("DEL", "gone-ns", &netns, &conf).ok();
    assert!(net.reservations().is_empty());
    // The link was deleted behind our back.
    let pod = NetNs::new().unwrap();
    let r = net.add("gone-link", &pod, &conf).result().clone();
    let host_if = r["interfaces"][0]["name"].as_str().unwrap();
    net.node.ip(&["link", "del", host_if]).unwrap();
    net.call("DEL", "gone-link", &pod.path().display().to_string(), &conf)
        .ok();
    // No reservation, but the veth exists (the IPAM state was lost).
    let pod2 = NetNs::new().unwrap();
    let r = net.add("gone-ipam", &pod2, &conf).result().clone();
    fs::remove_dir_all(net.data.path().join(&net.name)).unwrap();
    net.call("DEL", "gone-ipam", "", &conf).ok();
    let host_if = r["interfaces"][0]["name"].as_str().unwrap();
    assert!(!net.node_links().iter().any(|l| l == host_if));
    assert_eq!(net.node_links(), ["lo"]);
}

#[test]
fn range_gateway_mode_routes_via_the_range_gateway() {
    let net = Net::new();
    let mut conf = net.conf("1.1.0");
    conf["podGateway"] = json!("range");
    let (pa, pb) = (NetNs::new().unwrap(), NetNs::new().unwrap());
    let ra = net.add("ra", &pa, &conf).result().clone();
    let rb = net.add("rb", &pb, &conf).result().clone();
    assert_eq!(ra["ips"][0]["gateway"], "fd00:10:244:1::1");
    let routes = ip_json(&pa, &["-6", "route", "show"]);
    assert_eq!(
        route(&routes, "default").unwrap()["gateway"],
        "fd00:10:244:1::1"
    );
    // The gateway itself is on-link (IPv6 keeps no route scope; no gateway on this route).
    let gw = route(&routes, "fd00:10:244:1::1").expect("gateway /128 on-link route");
    assert_eq!(gw["dev"], "eth0");
    assert!(gw.get("gateway").is_none(), "{gw}");
    let host_if = ra["interfaces"][0]["name"].as_str().unwrap();
    let hl = &ip_json(&net.node, &["-6", "addr", "show", "dev", host_if])[0];
    assert!(
        hl["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "fd00:10:244:1::1" && a["prefixlen"] == 128),
        "{hl}"
    );
    let b_addr = rb["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    pa.exec("ping", &["-6", "-c", "1", "-W", "2", &b_addr])
        .unwrap();
    let netns = pa.path().display().to_string();
    net.call("CHECK", "ra", &netns, &with_prev(&conf, &ra)).ok();
    net.call("DEL", "ra", "", &conf).ok();
    net.call("DEL", "rb", "", &conf).ok();
    assert_eq!(net.node_links(), ["lo"]);
}

#[test]
fn check_reports_what_differs_from_prev_result() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    let r = net.add("chk", &pod, &conf).result().clone();
    let check = |prev: &Value| net.call("CHECK", "chk", &netns, &with_prev(&conf, prev));
    check(&r).ok();
    // prevResult missing: an invalid request.
    assert_eq!(net.call("CHECK", "chk", &netns, &conf).code(), 7);
    // A MAC that is not the interface's.
    let mut wrong_mac = r.clone();
    wrong_mac["interfaces"][1]["mac"] = json!("02:00:00:00:00:01");
    assert_eq!(check(&wrong_mac).code(), 100);
    // A route prevResult lists that the pod lacks.
    pod.ip(&["-6", "route", "del", "64:ff9b::/96"]).unwrap();
    let out = check(&r);
    assert_eq!(out.code(), 100);
    assert!(out.message().contains("64:ff9b::/96"), "{}", out.message());
    // The address is gone.
    let ip = r["ips"][0]["address"].as_str().unwrap();
    pod.ip(&["-6", "addr", "del", ip, "dev", "eth0"]).unwrap();
    assert_eq!(check(&r).code(), 100);
    net.call("DEL", "chk", &netns, &conf).ok();
}
