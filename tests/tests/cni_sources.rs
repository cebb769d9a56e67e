//! The plugin's side of pod source validation (docs/cni.md, "Source validation"): ADD records
//! the pod's addresses for its host veth before attaching, CHECK verifies them, DEL forgets
//! them, GC and the next ADD prune the entries of veths gone without a DEL (a crashed pod), a
//! re-ADD leaves exactly the new entries, and the pod annotation opts a pod out.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sixlane_agent::PinLayout;
use sixlane_attach::{
    AttachMode,
    sources::{Recorded, Sources},
};
use sixlane_cni::conf::{POD_ANNOTATIONS, SOURCE_VALIDATION_ANNOTATION};
use sixlane_testkit::NetNs;
use sixlane_tests::{
    cni::with_prev,
    cni_node::Net,
    load_datapath,
    nat64::ifindex,
    spoof::{claim, echoes_received, ping_from, spoofed},
};

fn table(layout: &PinLayout) -> BTreeMap<u32, Recorded> {
    Sources::open(layout)
        .unwrap()
        .expect("the datapath pins the source table")
        .entries()
        .unwrap()
}

fn host_if(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().unwrap().to_owned()
}

fn addr_of(result: &Value) -> Ipv6Addr {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().parse().unwrap()
}

/// What ADD should have recorded for `result`'s pod.
fn recorded(net: &Net, result: &Value, enforce: bool) -> (u32, Recorded) {
    let entry = Recorded {
        enforce: Some(enforce),
        addrs: BTreeSet::from([addr_of(result)]),
    };
    (ifindex(&net.node, &host_if(result)), entry)
}

/// Deletes the pod's namespace without a DEL (a crash), and waits for its veth to go.
fn crash(net: &Net, pod: NetNs, result: &Value) {
    let name = host_if(result);
    drop(pod);
    let start = Instant::now();
    while net.node_links().contains(&name) {
        assert!(start.elapsed() < Duration::from_secs(10), "{name} stays");
        thread::sleep(Duration::from_millis(50));
    }
}

fn opted_out(conf: &Value) -> Value {
    let mut c = conf.clone();
    c["runtimeConfig"] = json!({POD_ANNOTATIONS: {SOURCE_VALIDATION_ANNOTATION: "disabled"}});
    c
}

#[test]
fn add_records_check_verifies_del_forgets_gc_and_readd_prune() {
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = net.dataplane_conf("1.1.0", pins.path(), AttachMode::Tc);

    let pod = NetNs::new().unwrap();
    let a = net.add("a", &pod, &conf).result().clone();
    let want_a = recorded(&net, &a, true);
    assert_eq!(table(&layout), BTreeMap::from([want_a.clone()]));
    let checked = with_prev(&conf, &a);
    net.call("CHECK", "a", &pod.path().display().to_string(), &checked)
        .ok();
    // CHECK notices missing entries, and an opt-out the table does not have.
    let netns = pod.path().display().to_string();
    let out = net.call("CHECK", "a", &netns, &opted_out(&checked));
    assert!(out.message().contains("opted out"), "{}", out.message());
    Sources::open(&layout)
        .unwrap()
        .unwrap()
        .forget(want_a.0)
        .unwrap();
    let out = net.call("CHECK", "a", &netns, &checked);
    assert!(out.message().contains("source"), "{}", out.message());
    net.call("DEL", "a", &netns, &conf).ok();
    assert!(table(&layout).is_empty());

    // A pod that crashed (namespace gone, no DEL) and is added again, same container: exactly
    // the new veth's entries.
    let pod = NetNs::new().unwrap();
    let b = net.add("b", &pod, &conf).result().clone();
    let old = recorded(&net, &b, true);
    assert_eq!(table(&layout), BTreeMap::from([old.clone()]));
    let netns_b = pod.path().display().to_string();
    crash(&net, pod, &b);
    // The next ADD prunes what the gone veth left.
    let pod_c = NetNs::new().unwrap();
    let c = net.add("c", &pod_c, &conf).result().clone();
    let want_c = recorded(&net, &c, true);
    assert_eq!(table(&layout), BTreeMap::from([want_c.clone()]));
    // The runtime's DEL of the crashed sandbox (its namespace gone), then its ADD again.
    net.call("DEL", "b", &netns_b, &conf).ok();
    let pod_b = NetNs::new().unwrap();
    let b2 = net.add("b", &pod_b, &conf).result().clone();
    let new = recorded(&net, &b2, true);
    assert_ne!(new.0, old.0, "a new veth");
    assert_eq!(table(&layout), BTreeMap::from([want_c, new.clone()]));

    // GC: a crashed pod's entries go, a valid attachment's stay.
    crash(&net, pod_c, &c);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "eth0"}]);
    net.call("GC", "", "", &gc).ok();
    assert_eq!(table(&layout), BTreeMap::from([new]));
    net.call("DEL", "b", &pod_b.path().display().to_string(), &conf)
        .ok();
    assert!(table(&layout).is_empty());
    net.assert_clean(&layout);
}

#[test]
fn an_opted_out_pod_may_send_from_another_address_others_may_not() {
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = net.dataplane_conf("1.0.0", pins.path(), AttachMode::Tc);
    let (free_ns, strict_ns, target_ns) = (
        NetNs::new().unwrap(),
        NetNs::new().unwrap(),
        NetNs::new().unwrap(),
    );
    let free = net
        .add("free", &free_ns, &opted_out(&conf))
        .result()
        .clone();
    let strict = net.add("strict", &strict_ns, &conf).result().clone();
    let target = net.add("target", &target_ns, &conf).result().clone();
    let t = table(&layout);
    assert_eq!(t[&recorded(&net, &free, false).0].enforce, Some(false));
    assert_eq!(t[&recorded(&net, &strict, true).0].enforce, Some(true));
    let dst = addr_of(&target).to_string();

    // Both reach the target from their own address (which also resolves the gateway: a
    // solicitation's source is the packet's waiting for it), then claim an address that is not
    // theirs (one a workload like a VIP holder might use).
    let other: Ipv6Addr = "fd00:10:244:1::f0".parse().unwrap();
    for (ns, r) in [(&free_ns, &free), (&strict_ns, &strict)] {
        let before = echoes_received(&target_ns);
        ping_from(ns, &addr_of(r).to_string(), &dst, 3);
        assert_eq!(echoes_received(&target_ns) - before, 3);
        claim(ns, other);
    }
    let before = (echoes_received(&target_ns), spoofed(&layout));
    ping_from(&free_ns, &other.to_string(), &dst, 3);
    assert_eq!(
        echoes_received(&target_ns) - before.0,
        3,
        "opted out: passes"
    );
    assert_eq!(spoofed(&layout), before.1);
    ping_from(&strict_ns, &other.to_string(), &dst, 3);
    assert_eq!(
        echoes_received(&target_ns) - before.0,
        3,
        "validated: dropped"
    );
    assert_eq!(spoofed(&layout) - before.1, 3);

    for (id, ns) in [
        ("free", &free_ns),
        ("strict", &strict_ns),
        ("target", &target_ns),
    ] {
        net.call("DEL", id, &ns.path().display().to_string(), &conf)
            .ok();
    }
    assert!(table(&layout).is_empty());
}
