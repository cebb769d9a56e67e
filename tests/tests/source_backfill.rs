//! Source validation for pods attached before it existed (docs/cni.md, "Source validation"):
//! veths an older plugin attached have no record, and the agent records them from the IPAM
//! store, honouring the opt-out annotation of the node's pods as the API server (stand-in) has
//! them, at start and again whenever a record goes missing; `sixlane-agent sources` shows each
//! veth's mode before and after.

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv6Addr, SocketAddr},
};

use serde_json::{Value, json};
use sixlane_agent::PinLayout;
use sixlane_attach::{AttachMode, sources::Sources};
use sixlane_common::source::SOURCE_VALIDATION_ANNOTATION;
use sixlane_testkit::{NetNs, TempDir};
use sixlane_tests::{
    agentproc::{AgentRun, http_get, wait_for},
    bins,
    cni_node::Net,
    kubeapi::{self, ApiServer, Tls},
    load_datapath,
    nat64::ifindex,
    spoof::{claim, echoes_received, ping_from, spoofed},
};

fn addr_of(result: &Value) -> Ipv6Addr {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().parse().unwrap()
}

fn host_if(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().unwrap().to_owned()
}

fn pod(name: &str, node: &str, ip: Ipv6Addr, opt_out: bool) -> Value {
    let annotations = if opt_out {
        json!({SOURCE_VALIDATION_ANNOTATION: "disabled"})
    } else {
        json!({})
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"podIPs": [{"ip": ip.to_string()}]},
    })
}

/// The marker recorded for `ifindex` (`None`: none) and its addresses.
fn recorded(layout: &PinLayout, ifindex: u32) -> (Option<bool>, BTreeSet<Ipv6Addr>) {
    let t = Sources::open(layout).unwrap().unwrap().entries().unwrap();
    let r = t.get(&ifindex).cloned().unwrap_or_default();
    (r.enforce, r.addrs)
}

/// `sixlane-agent sources` in the node's namespace: mode and container of veth `host_if`.
fn listed(net: &Net, pins: &std::path::Path, host_if: &str) -> (String, String) {
    let out = net
        .node
        .command(bins::path("sixlane-agent").to_str().unwrap())
        .arg("--pin-root")
        .arg(pins)
        .args(["--json", "sources", "--data-dir"])
        .arg(net.data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .iter()
        .find(|r| r["veth"] == host_if)
        .unwrap_or_else(|| panic!("{host_if} not in {rows:?}"));
    let s = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
    (s("mode"), s("containerId"))
}

fn forget(layout: &PinLayout, ifindex: u32) {
    Sources::open(layout)
        .unwrap()
        .unwrap()
        .forget(ifindex)
        .unwrap();
}

#[test]
fn the_agent_validates_pods_attached_before_and_honours_their_opt_out() {
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = net.dataplane_conf("1.1.0", pins.path(), AttachMode::Tc);
    let (strict_ns, free_ns, target_ns) = (
        NetNs::new().unwrap(),
        NetNs::new().unwrap(),
        NetNs::new().unwrap(),
    );
    let strict = net.add("strict", &strict_ns, &conf).result().clone();
    let free = net.add("free", &free_ns, &conf).result().clone();
    let target = net.add("target", &target_ns, &conf).result().clone();
    let (strict_if, free_if) = (
        ifindex(&net.node, &host_if(&strict)),
        ifindex(&net.node, &host_if(&free)),
    );
    // As an older plugin would have left them: attached, nothing recorded.
    forget(&layout, strict_if);
    forget(&layout, free_if);
    // The CLI shows them as not validated, with their containers.
    for (r, id) in [(&strict, "strict"), (&free, "free")] {
        assert_eq!(
            listed(&net, pins.path(), &host_if(r)),
            ("not validated".into(), id.into())
        );
    }
    let dst = addr_of(&target).to_string();
    let other: Ipv6Addr = "fd00:10:244:1::f0".parse().unwrap();
    for (ns, r) in [(&strict_ns, &strict), (&free_ns, &free)] {
        ping_from(ns, &addr_of(r).to_string(), &dst, 1);
        claim(ns, other);
    }
    let before = echoes_received(&target_ns);
    ping_from(&strict_ns, &other.to_string(), &dst, 2);
    assert_eq!(
        echoes_received(&target_ns) - before,
        2,
        "without a record a pod may send from any address"
    );

    // The API server: the node's two pods, `free` opted out; a pod of another node with
    // `strict`'s address and the opt-out does not count.
    let dir = TempDir::new('b').unwrap();
    let api_addr = SocketAddr::from((Ipv6Addr::LOCALHOST, 6443));
    let tls = Tls::new(&dir.path().join("tls"), Ipv6Addr::LOCALHOST);
    let token = format!("sixlane-backfill-{}", std::process::id());
    let mut objects = kubeapi::objects(vec![], vec![], vec![]);
    objects.insert(
        "/api/v1/pods",
        (
            "v1",
            "PodList",
            vec![
                pod("strict", "node1", addr_of(&strict), false),
                pod("free", "node1", addr_of(&free), true),
                pod("elsewhere", "node2", addr_of(&strict), true),
            ],
        ),
    );
    let api = ApiServer::start(&net.node, api_addr, &tls, &token, objects);
    let kubeconfig = dir.path().join("kubeconfig");
    kubeapi::kubeconfig(&kubeconfig, api.addr, &tls, &token);
    let run = AgentRun::new(pins.path(), "node1", dir.path()).kubeconfig(&kubeconfig);
    fs::write(
        run.config(),
        format!(
            "cni:\n  checkBinaries: false\n  dataDir: {}\nhealthz:\n  kubeProxyListen: null\n",
            net.data.path().display()
        ),
    )
    .unwrap();
    let log = run.log();
    let agent = run.spawn(&net.node);

    let strict_want = (Some(true), BTreeSet::from([addr_of(&strict)]));
    let free_want = (Some(false), BTreeSet::from([addr_of(&free)]));
    wait_for("the agent's records", &log, || {
        (recorded(&layout, strict_if) == strict_want && recorded(&layout, free_if) == free_want)
            .then_some(())
    });
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path == "/api/v1/pods" && !r.watch && r.authorized),
        "{:?}",
        api.requests()
    );
    for (r, mode) in [
        (&strict, "validated"),
        (&free, "opted out"),
        (&target, "validated"),
    ] {
        assert_eq!(listed(&net, pins.path(), &host_if(r)).0, mode);
    }
    let before = (echoes_received(&target_ns), spoofed(&layout));
    ping_from(&strict_ns, &other.to_string(), &dst, 3);
    ping_from(&free_ns, &other.to_string(), &dst, 3);
    assert_eq!(
        echoes_received(&target_ns) - before.0,
        3,
        "only free's pass"
    );
    assert_eq!(spoofed(&layout) - before.1, 3, "strict's are dropped");
    let before = echoes_received(&target_ns);
    ping_from(&strict_ns, &addr_of(&strict).to_string(), &dst, 2);
    assert_eq!(
        echoes_received(&target_ns) - before,
        2,
        "its own address passes"
    );

    // A record lost while the agent runs (an older plugin's ADD meanwhile) is made again.
    forget(&layout, strict_if);
    wait_for("the record made again", &log, || {
        (recorded(&layout, strict_if) == strict_want).then_some(())
    });
    let metrics = wait_for("the count", &log, || {
        let (_, m) = http_get(&net.node, "http://[::1]:9660/metrics");
        m.contains("sixlane_pod_sources_backfilled_total{mode=\"validated\"} 2")
            .then_some(m)
    });
    assert!(
        metrics.contains("sixlane_pod_sources_backfilled_total{mode=\"opted_out\"} 1"),
        "{metrics}"
    );
    // `target`, recorded by its ADD, was left as it was.
    let target_if = ifindex(&net.node, &host_if(&target));
    assert_eq!(
        recorded(&layout, target_if),
        (Some(true), BTreeSet::from([addr_of(&target)]))
    );

    drop(agent);
    for (id, ns) in [
        ("strict", &strict_ns),
        ("free", &free_ns),
        ("target", &target_ns),
    ] {
        net.call("DEL", id, &ns.path().display().to_string(), &conf)
            .ok();
    }
    assert!(
        Sources::open(&layout)
            .unwrap()
            .unwrap()
            .entries()
            .unwrap()
            .is_empty()
    );
}
