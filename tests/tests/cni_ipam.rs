//! The `sixlane` plugin's IPAM (`sixlane-ipam`, host-local's on-disk format): STATUS when a
//! range set is exhausted, GC of what is not a valid attachment, reservations of an earlier
//! boot released, distinct addresses under parallel ADDs, a consistent store after ADDs killed
//! with SIGKILL, and reservations shared with Debian's host-local both ways.

use std::{collections::HashSet, fs, net::Ipv6Addr, path::Path, thread, time::Duration};

use serde_json::{Value, json};
use sixlane_testkit::{NetNs, rng::Rng};
use sixlane_tests::{
    cni::{self, Call, Plugin},
    cni_node::Net,
};

#[test]
fn status_fails_with_50_when_a_range_set_is_exhausted() {
    let net = Net::new();
    let mut conf = net.conf("1.1.0");
    conf["ipam"]["ranges"] = json!([[{"subnet": "fd00:30::/64", "rangeStart": "fd00:30::10", "rangeEnd": "fd00:30::11"}]]);
    let pods: Vec<NetNs> = (0..3).map(|_| NetNs::new().unwrap()).collect();
    net.call("STATUS", "", "", &conf).ok();
    net.add("s0", &pods[0], &conf).result();
    net.add("s1", &pods[1], &conf).result();
    assert_eq!(net.call("STATUS", "", "", &conf).code(), 50);
    let out = net.add("s2", &pods[2], &conf);
    assert_eq!(out.code(), 11);
    assert_eq!(net.node_links().len(), 3, "the failed ADD left no veth");
    net.call("DEL", "s0", "", &conf).ok();
    net.call("STATUS", "", "", &conf).ok();
    net.call("DEL", "s1", "", &conf).ok();
}

#[test]
fn gc_releases_what_is_not_a_valid_attachment() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let pods: Vec<NetNs> = (0..3).map(|_| NetNs::new().unwrap()).collect();
    for (i, p) in pods.iter().enumerate() {
        net.add(&format!("g{i}"), p, &conf).result();
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g1", "ifname": "eth0"}]);
    net.call("GC", "", "", &gc).ok();
    let left = net.reservations();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, "g1\r\neth0");
    for i in 0..3 {
        net.call("DEL", &format!("g{i}"), "", &conf).ok();
    }
}

#[test]
fn reservations_stamped_with_an_earlier_boot_are_released() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let pod = NetNs::new().unwrap();
    let r = net.add("before-reboot", &pod, &conf).result().clone();
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Pretend the reservation and the last sweep happened in another boot.
    let side = net.data.path().join(".sixlane").join(&net.name);
    let stamp = side.join(&ip);
    let body = fs::read_to_string(&stamp).unwrap();
    let (_, owner) = body.split_once('\n').unwrap();
    fs::write(
        &stamp,
        format!("boot 00000000-0000-0000-0000-000000000000\n{owner}"),
    )
    .unwrap();
    fs::write(side.join("boot"), "00000000-0000-0000-0000-000000000000").unwrap();
    net.call("STATUS", "", "", &conf).ok();
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    net.call("DEL", "before-reboot", "", &conf).ok();
}

#[test]
fn parallel_adds_get_distinct_addresses() {
    let net = Net::new();
    let conf = net.conf("1.0.0");
    const N: usize = 64;
    for round in 0..3 {
        let pods: Vec<NetNs> = (0..N).map(|_| NetNs::new().unwrap()).collect();
        let outs: Vec<cni::Output> = thread::scope(|s| {
            let hs: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (net, conf) = (&net, &conf);
                    s.spawn(move || net.add(&format!("p{round}-{i}"), p, conf))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ips: HashSet<Ipv6Addr> = outs.iter().map(cni::Output::ip).collect();
        assert_eq!(ips.len(), N, "round {round}: duplicate addresses");
        assert_eq!(net.reservations().len(), N);
        assert_eq!(net.node_links().len(), N + 1);
        thread::scope(|s| {
            for i in 0..N {
                let (net, conf) = (&net, &conf);
                s.spawn(move || {
                    net.call("DEL", &format!("p{round}-{i}"), "", conf)
                        .ok()
                        .success
                });
            }
        });
        assert!(net.reservations().is_empty());
        assert_eq!(net.node_links(), ["lo"]);
    }
}

#[test]
fn kill_9_during_add_then_del_leaves_a_consistent_store() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let conf_bytes = serde_json::to_vec(&conf).unwrap();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut killed = Vec::new();
    let mut interrupted = 0;
    for i in 0..24 {
        let delay = Duration::from_micros(rng.below(6000) as u64);
        let pod = NetNs::new().unwrap();
        let id = format!("k{i}");
        if net.killed_add(&id, &pod, &conf_bytes, delay) {
            interrupted += 1;
        }
        // Every reservation file is complete (never empty or partial).
        for (_, owner) in net.reservations() {
            assert!(
                owner.starts_with('k') && owner.ends_with("\r\neth0"),
                "{owner:?}"
            );
        }
        killed.push((id, pod));
    }
    assert!(interrupted > 0, "no ADD was killed while running");
    for (id, pod) in &killed {
        net.call("DEL", id, &pod.path().display().to_string(), &conf)
            .ok();
    }
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    assert_eq!(net.node_links(), ["lo"]);
    let names: Vec<String> = fs::read_dir(net.data.path().join(&net.name))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "lock" || n.starts_with("last_reserved_ip.")),
        "{names:?}"
    );
    // GC agrees: nothing valid, nothing left.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    net.call("GC", "", "", &gc).ok();
    assert!(net.reservations().is_empty());
}

/// Runs Debian's host-local directly (an IPAM plugin is callable on its own).
fn host_local(net: &Net, cmd: &str, id: &str, conf: &Value) -> cni::Output {
    let mut c = conf.clone();
    c["ipam"]["type"] = json!("host-local");
    Plugin::at("/usr/lib/cni/host-local").call(
        Some(&net.node),
        &Call::new(cmd, id, "/run/netns/unused", "eth0"),
        &c,
    )
}

#[test]
fn host_local_and_sixlane_share_reservations_both_ways() {
    assert!(
        Path::new("/usr/lib/cni/host-local").exists(),
        "Debian's containernetworking-plugins is missing (cargo xtask setup installs it)"
    );
    let net = Net::new();
    let mut conf = net.conf("1.0.0");
    conf["ipam"]["type"] = json!("host-local");
    // host-local reserves; sixlane sees it, continues its round robin, and releases it.
    let hl = host_local(&net, "ADD", "from-hl", &conf);
    let hl_ip = hl.ip();
    let pod = NetNs::new().unwrap();
    let ours = net.add("from-us", &pod, &conf);
    assert_eq!(
        u128::from(ours.ip()),
        u128::from(hl_ip) + 1,
        "round robin shared"
    );
    net.call("DEL", "from-hl", "", &conf).ok();
    assert!(!net.reservations().iter().any(|(ip, _)| *ip == hl_ip));
    // sixlane's reservation: byte-identical format, found and released by host-local.
    let r = net.reservations();
    assert_eq!(r, [(ours.ip(), "from-us\r\neth0".to_owned())]);
    host_local(&net, "CHECK", "from-us", &conf).ok();
    host_local(&net, "DEL", "from-us", &conf).ok();
    assert!(net.reservations().is_empty());
    // host-local continues after our last_reserved_ip.
    let next = host_local(&net, "ADD", "again", &conf);
    assert_eq!(u128::from(next.ip()), u128::from(ours.ip()) + 1);
    host_local(&net, "DEL", "again", &conf).ok();
    net.call("DEL", "from-us", "", &conf).ok();
}
